"""airgap-llm: provision airgapped GPU hosts into a running vLLM serving stack."""

__version__ = "0.1.0"
