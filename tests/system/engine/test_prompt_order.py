"""Prompt order on the real model: a short request that arrives right behind long prompts gets
its first token before they finish their prompts (shortest remaining prompt first)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.engine.llama import LlamaEngine, load_engine

DOCUMENT = " ".join(
    f"Entry {i}: the harbor logged {i * 7 % 53} boats and {i * 3 % 17} cranes today."
    for i in range(90)
)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    engine = load_engine(Settings(slots=4, n_ctx=2048, prompt_cache_mb=0))
    yield engine
    engine.close()


async def first_token_at(engine: LlamaEngine, text: str, started: float) -> float:
    async for delta in engine.generate(engine.tokenize(text), SamplingParams(max_tokens=2)):
        if delta.completion_tokens >= 1:
            return time.perf_counter() - started
    raise AssertionError("no token")


def test_a_short_prompt_behind_long_ones_gets_its_first_token_first(engine: LlamaEngine) -> None:
    assert len(engine.tokenize(DOCUMENT)) > 1200  # several steps of prompt each

    async def scenario() -> tuple[list[float], float]:
        started = time.perf_counter()
        docs = [
            asyncio.create_task(first_token_at(engine, f"[{i}] {DOCUMENT}", started))
            for i in range(2)
        ]
        await asyncio.sleep(0.3)  # the documents are being computed
        short = await first_token_at(engine, "Name a colour.", started)
        return list(await asyncio.gather(*docs)), short

    docs, short = asyncio.run(scenario())
    assert short < min(docs), (short, docs)
