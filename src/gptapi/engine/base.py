"""The engine interface the HTTP layer depends on, free of llama.cpp types."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    skip_leading_whitespace: bool = False


@dataclass(frozen=True)
class ModelInfo:
    id: str
    path: Path
    size_bytes: int
    origin: str
    n_ctx: int
    chat_template: str | None
    bos_token: str
    eos_token: str


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    queue_s: float
    ttft_s: float | None
    total_s: float

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - (self.ttft_s or 0.0)
        if self.completion_tokens <= 1 or decode_s <= 0:
            return 0.0
        # The first token's time is prompt processing; rate covers the tokens after it.
        return (self.completion_tokens - 1) / decode_s


class Engine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    async def count_tokens(self, prompt: str) -> int: ...

    async def complete(self, prompt: str, params: SamplingParams) -> Completion: ...

    def close(self) -> None: ...
