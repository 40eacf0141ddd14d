"""Will a model fit its GPU share? Weights from the safetensors headers, KV cache from config.json, and
the engine's own overhead, checked before any host is touched (rule ``memory-fit``)."""
