"""Inference engines. Only this package imports ``llama_cpp``; the service talks to ``Engine``."""

from gptapi.engine.base import (
    Delta,
    Engine,
    EngineError,
    EngineOverloaded,
    FinishReason,
    ModelInfo,
    Prompt,
    PromptPart,
    PromptStats,
    SamplingParams,
    Speeds,
    TokenLogprob,
    prompt_parts,
    prompt_text,
)

__all__ = [
    "Delta",
    "Engine",
    "EngineError",
    "EngineOverloaded",
    "FinishReason",
    "ModelInfo",
    "Prompt",
    "PromptPart",
    "PromptStats",
    "SamplingParams",
    "Speeds",
    "TokenLogprob",
    "prompt_parts",
    "prompt_text",
]
