"""Prompt prefixes shared between sequences, on the real model: a prefix common to several
requests is computed once, and every answer is the one the request gets without sharing."""

import asyncio
from collections.abc import Iterator

import pytest

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.engine.llama import LlamaEngine, load_engine
from tests.helpers import KEYWORDS, prompt_for

SYSTEM = "You are a careful assistant. Follow the instructions exactly and answer briefly.\n\n"
GREEDY = SamplingParams(max_tokens=8, stop=("\n",))


@pytest.fixture(scope="module")
def sharing() -> Iterator[LlamaEngine]:
    # The prompt cache off: these tests count what is shared between concurrent sequences.
    engine = load_engine(Settings(slots=4, n_ctx=512, prompt_cache_mb=0))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def plain() -> Iterator[LlamaEngine]:
    engine = load_engine(Settings(slots=4, n_ctx=512, share_prefixes=False, prompt_cache_mb=0))
    yield engine
    engine.close()


async def collect(engine: LlamaEngine, text: str, params: SamplingParams = GREEDY) -> str:
    return "".join([d.text async for d in engine.generate(engine.tokenize(text), params)])


async def burst(engine: LlamaEngine, texts: list[str]) -> list[str]:
    return await asyncio.gather(*(collect(engine, t) for t in texts))


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
        n += 1
    return n


def test_a_burst_with_a_common_prefix_computes_it_once_and_answers_as_without_sharing(
    sharing: LlamaEngine, plain: LlamaEngine
) -> None:
    words = KEYWORDS[:4]
    texts = [SYSTEM + prompt_for(w) for w in words]
    tokens = [sharing.tokenize(t) for t in texts]
    # Each request after the first takes over its longest prefix in common with an earlier one.
    expected_shared = sum(
        max(common_prefix(tokens[i], tokens[j]) for j in range(i)) for i in range(1, 4)
    )
    assert expected_shared > 3 * 15  # the system prompt alone is longer than that
    before = sharing.prompt_stats().shared_tokens

    shared_answers = asyncio.run(burst(sharing, texts))

    assert sharing.prompt_stats().shared_tokens - before == expected_shared
    assert plain.prompt_stats().shared_tokens == 0
    assert shared_answers == asyncio.run(burst(plain, texts))
    for word, text in zip(words, shared_answers, strict=True):
        assert word in text
        assert not any(other in text for other in words if other != word)


def test_a_later_request_takes_the_prefix_from_a_running_one(
    sharing: LlamaEngine, plain: LlamaEngine
) -> None:
    first = SYSTEM + "Write a long story about the sea."
    second = SYSTEM + prompt_for("GLACIER")
    expected_shared = common_prefix(sharing.tokenize(second), sharing.tokenize(first))

    async def second_while_first_runs() -> str:
        running = sharing.generate(sharing.tokenize(first), SamplingParams(max_tokens=40))
        await anext(running)  # the first request's prompt is in the cache now
        before = sharing.prompt_stats().shared_tokens
        answer = await collect(sharing, second)
        assert sharing.prompt_stats().shared_tokens - before == expected_shared
        await running.aclose()
        return answer

    answer = asyncio.run(second_while_first_runs())
    assert answer == asyncio.run(collect(plain, second))
    assert "GLACIER" in answer


def test_sharing_is_off_without_a_unified_cache() -> None:
    engine = load_engine(Settings(slots=2, n_ctx=256, kv_unified=False, prompt_cache_mb=0))
    try:
        texts = [SYSTEM + prompt_for(w) for w in KEYWORDS[:2]]
        answers = asyncio.run(burst(engine, texts))
        assert engine.prompt_stats().shared_tokens == 0
        assert all(w in a for w, a in zip(KEYWORDS[:2], answers, strict=True))
    finally:
        engine.close()


def test_a_request_that_may_outgrow_the_sliding_window_computes_its_own_prefix(
    sharing: LlamaEngine,
) -> None:
    # The sliding-window cache only reclaims cells one sequence holds: a shared cell must stay
    # in the window of a sequence holding it for that sequence's whole life.
    n_swa = sharing._schedulers[0].n_swa
    assert n_swa > 0  # Gemma 3 has sliding-window layers

    async def long_request_while_another_runs() -> int:
        running = sharing.generate(
            sharing.tokenize(SYSTEM + "Write a long story."), SamplingParams(max_tokens=40)
        )
        await anext(running)
        before = sharing.prompt_stats().shared_tokens
        long_one = sharing.generate(
            sharing.tokenize(SYSTEM + prompt_for("HARBOR")), SamplingParams(max_tokens=n_swa)
        )
        await anext(long_one)
        await long_one.aclose()
        await running.aclose()
        return sharing.prompt_stats().shared_tokens - before

    assert asyncio.run(long_request_while_another_runs()) == 0
