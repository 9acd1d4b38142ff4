"""Both llama.cpp engines on the real model, driven directly (no HTTP)."""

import asyncio

import pytest

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.engine.llama import LlamaEngine, load_engine
from tests.engine.test_batching import KEYWORDS, prompt_for


async def answers(engine: LlamaEngine, words: list[str]) -> list[str]:
    async def one(word: str) -> str:
        tokens = engine.tokenize(prompt_for(word))
        params = SamplingParams(max_tokens=8, stop=("\n",))
        return "".join([d.text async for d in engine.generate(tokens, params)])

    return await asyncio.gather(*(one(w) for w in words))


@pytest.mark.parametrize(("engine_kind", "slots"), [("batched", 4), ("pool", 2)])
def test_engine_answers_concurrent_requests_without_cross_talk(
    engine_kind: str, slots: int
) -> None:
    engine = load_engine(Settings(engine=engine_kind, slots=slots, n_threads=2, n_ctx=512))
    try:
        assert engine.slots == slots
        words = KEYWORDS[:6]  # more requests than slots: the rest wait in the schedulers
        for word, text in zip(words, asyncio.run(answers(engine, words)), strict=True):
            assert word in text
            assert not any(other in text for other in words if other != word)
    finally:
        engine.close()


def test_pool_engine_never_builds_more_contexts_than_threads() -> None:
    engine = load_engine(Settings(engine="pool", slots=8, n_threads=2, n_ctx=256))
    try:
        assert engine.slots == 2
    finally:
        engine.close()


def test_info_reports_the_per_slot_context_and_the_model() -> None:
    engine = load_engine(Settings(slots=3, n_ctx=1024))
    try:
        assert engine.info.n_ctx == 1024
        assert engine.info.id == "Gemma 3 270m"
        assert engine.info.chat_template is None
        assert engine.info.bos_token == "<bos>"
    finally:
        engine.close()
