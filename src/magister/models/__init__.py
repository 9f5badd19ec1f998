"""Models: the one batch contract (`base.py`) and a module per backend: llama.cpp, OpenAI-compatible HTTP,
transformers, mock."""
