"""The offline bundle: what the connected machine builds and the airgapped side verifies."""
