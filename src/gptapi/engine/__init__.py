"""Inference engines. Only this package imports ``llama_cpp``; the service talks to ``Engine``."""

from gptapi.engine.base import Completion, Engine, ModelInfo, SamplingParams

__all__ = ["Completion", "Engine", "ModelInfo", "SamplingParams"]
