"""A fake engine for the fast tier: it stands in for llama.cpp so the code around the engine
(edge, pipeline, gateway) can be tested in process in seconds. It proves nothing about the
engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from pathlib import Path

from gptapi.engine import (
    Delta,
    EngineError,
    ModelInfo,
    Prompt,
    PromptPart,
    PromptStats,
    SamplingParams,
    Speeds,
    TokenLogprob,
    prompt_parts,
)

INFO = ModelInfo(
    id="fake", path=Path("fake.gguf"), size_bytes=1, origin="test", n_ctx=512,
    chat_template=None, bos_token="<bos>", eos_token="<eos>",
)  # fmt: skip
# Gemma 3's turn format.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@dataclass
class FakeEngine:
    """One token per word. Generates " t1", " t2", ... every ``token_s`` seconds up to
    max_tokens; ``fail_after`` tokens raises EngineError mid-stream. Records what it was given."""

    slots: int = 2
    info: ModelInfo = INFO
    token_s: float = 0.0
    piece: str = ""  # appended to each token's text (to make big streams)
    reply: str | None = None  # else: this text, 3 characters a token, then "stop"
    fail_after: int | None = None
    failure: type[EngineError] = EngineError  # what fail_after raises
    prompts: list[tuple[PromptPart, ...]] = field(default_factory=list)
    params: list[SamplingParams] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    running: int = 0
    alive: bool = True
    measured: Speeds | None = None  # what speeds() reports (a real engine measures at start)

    @classmethod
    def instruct(cls, template: str = GEMMA_TEMPLATE, **kwargs: object) -> FakeEngine:
        return cls(info=replace(INFO, chat_template=template), **kwargs)  # type: ignore[arg-type]

    def prompt_stats(self) -> PromptStats:
        return PromptStats(0, 0, 0, 0, 0, 0, 0)

    def tokenize(self, prompt: Prompt) -> list[int]:
        parts = tuple(prompt_parts(prompt))
        self.prompts.append(parts)
        return list(range(1, 1 + sum(len(p.text.split()) for p in parts)))

    def check_grammar(self, grammar: str) -> None:
        if "root" not in grammar:
            raise ValueError("no root rule")

    def pieces(self, tokens: list[int]) -> list[bytes]:
        if any(not 0 <= t < 1000 for t in tokens):
            raise ValueError("token outside the fake vocabulary (0..999)")
        return [f" w{t}".encode() for t in tokens]

    async def generate(
        self, tokens: list[int], params: SamplingParams, *, scope: str = ""
    ) -> AsyncGenerator[Delta, None]:
        self.params.append(params)
        self.scopes.append(scope)
        self.running += 1
        try:
            if self.reply is not None:
                pieces = [self.reply[i : i + 3] for i in range(0, len(self.reply), 3)]
                for i, text in enumerate(pieces[: params.max_tokens], 1):
                    done = i == len(pieces) or i == params.max_tokens
                    finish = None if not done else "stop" if i == len(pieces) else "length"
                    entry = () if params.logprobs is None else (TokenLogprob(text.encode(), -0.5),)
                    yield Delta(text, i, finish, logprobs=entry)  # type: ignore[arg-type]
                return
            for i in range(1, params.max_tokens + 1):
                if self.fail_after is not None and i > self.fail_after:
                    raise self.failure("llama_decode failed")
                await asyncio.sleep(self.token_s)
                finish = "length" if i == params.max_tokens else None
                text = f" t{i}{self.piece}"
                k = params.logprobs
                logprobs = () if k is None else (
                    TokenLogprob(text.encode(), -0.5, tuple((f" a{j}".encode(), -1.0 - j)
                                                           for j in range(k))),
                )  # fmt: skip
                yield Delta(text, i, finish, logprobs=logprobs)
        finally:
            self.running -= 1

    def speeds(self) -> Speeds | None:
        return self.measured

    def healthy(self) -> bool:
        return self.alive

    def close(self) -> None:
        pass
