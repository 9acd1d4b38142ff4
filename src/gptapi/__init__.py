"""gptapi: a self-hosted, CPU-only LLM API over one memory-mapped GGUF model."""

__version__ = "0.1.0"
