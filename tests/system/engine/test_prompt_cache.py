"""The prompt cache on the real model: computed prompt KV outlives its request, a later request
starts from it, and every answer is the one the request gets with the cache off.

Answers are compared on prompts whose greedy answer is clear (a secret word to repeat): with
and without the cache, llama.cpp computes the same tokens in batches of other sizes, and float
results of different batch shapes differ in the last bits (a near-tie could flip either way).
"""

import asyncio
from collections.abc import Iterator

import pytest

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.engine.llama import LlamaEngine, load_engine
from gptapi.engine.prompt_cache import MIN_ENTRY_TOKENS
from tests.helpers import KEYWORDS, prompt_for

# ~300 tokens of instructions every request shares, as a system prompt would be.
INSTRUCTIONS = (
    "You are a careful assistant. Follow the instructions exactly and answer briefly. "
    "Never add anything the user did not ask for, and keep every answer on one line. " * 8 + "\n\n"
)
GREEDY = SamplingParams(max_tokens=8, stop=("\n",))


@pytest.fixture(scope="module")
def cached() -> Iterator[LlamaEngine]:
    # Sharing between concurrent sequences off, so every saved token comes from the cache.
    engine = load_engine(Settings(slots=4, n_ctx=1024, share_prefixes=False))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def uncached() -> Iterator[LlamaEngine]:
    engine = load_engine(Settings(slots=4, n_ctx=2048, share_prefixes=False, prompt_cache_mb=0))
    yield engine
    engine.close()


async def answer(
    engine: LlamaEngine, text: str, params: SamplingParams = GREEDY
) -> tuple[str, int]:
    """The answer and the prompt tokens the request did not compute."""
    parts, cached = [], -1
    async for delta in engine.generate(engine.tokenize(text), params):
        parts.append(delta.text)
        cached = delta.cached_tokens
    return "".join(parts), cached


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_the_same_prompt_twice_computes_only_its_last_token_and_answers_the_same(
    cached: LlamaEngine, uncached: LlamaEngine
) -> None:
    text = INSTRUCTIONS + prompt_for("PELICAN")
    n_prompt = len(cached.tokenize(text))
    assert n_prompt > 250
    before = cached.prompt_stats()

    first, first_cached = asyncio.run(answer(cached, text))
    second, second_cached = asyncio.run(answer(cached, text))

    assert first_cached == 0
    # The last prompt token is always computed: it yields the request's first logits.
    assert second_cached == n_prompt - 1
    after = cached.prompt_stats()
    assert after.cache_hit_tokens - before.cache_hit_tokens == n_prompt - 1
    assert after.cache_miss_tokens - before.cache_miss_tokens == n_prompt + 1
    assert after.cache_entries >= 1
    reference, nothing_cached = asyncio.run(answer(uncached, text))
    assert nothing_cached == 0
    assert first == second == reference
    assert "PELICAN" in first


def test_a_shared_prefix_with_other_suffixes_is_computed_once_and_answers_as_without_cache(
    cached: LlamaEngine, uncached: LlamaEngine
) -> None:
    words = KEYWORDS[1:5]
    # Other instructions than the test above left in the cache.
    texts = ["Answer as a poet would. " + INSTRUCTIONS + prompt_for(w) for w in words]
    tokens = [cached.tokenize(t) for t in texts]
    # Served one after another, each request starts from the longest prefix an earlier one left.
    expected = [0] + [max(common_prefix(tokens[i], tokens[j]) for j in range(i)) for i in (1, 2, 3)]
    assert min(expected[1:]) > 250

    results = [asyncio.run(answer(cached, t)) for t in texts]

    assert [c for _, c in results] == expected
    references = [asyncio.run(answer(uncached, t))[0] for t in texts]
    assert [a for a, _ in results] == references
    for word, (text, _) in zip(words, results, strict=True):
        assert word in text
        assert not any(other in text for other in KEYWORDS if other != word)


def test_eviction_keeps_the_budget_and_an_evicted_prefix_is_recomputed_to_the_same_answer(
    uncached: LlamaEngine,
) -> None:
    # A 6 MiB budget holds one ~300-token entry of the embedded model (18 KiB a token).
    engine = load_engine(Settings(slots=2, n_ctx=1024, share_prefixes=False, prompt_cache_mb=6))
    try:
        budget = engine.prompt_stats().cache_budget_bytes
        a = "Notes on birds. " * 40 + prompt_for("LANTERN")
        b = "Notes on ships. " * 40 + prompt_for("HARBOR")
        first_a, _ = asyncio.run(answer(engine, a))
        assert engine.prompt_stats().cache_entries == 1
        assert 0 < engine.prompt_stats().cache_bytes <= budget
        _, b_cached = asyncio.run(answer(engine, b))  # no room for both: evicts a's entry
        stats = engine.prompt_stats()
        assert b_cached == 0  # a few tokens in common with a: not worth restoring
        assert stats.cache_evictions == 1
        assert stats.cache_entries == 1
        assert stats.cache_bytes <= budget

        again_a, a_cached = asyncio.run(answer(engine, a))

        assert a_cached == 0  # computed again
        assert engine.prompt_stats().cache_bytes <= budget
        assert first_a == again_a == asyncio.run(answer(uncached, a))[0]
        assert "LANTERN" in first_a
    finally:
        engine.close()


def test_a_prefill_cancelled_midway_is_kept_and_its_retry_resumes_from_it(
    uncached: LlamaEngine,
) -> None:
    # Small steps, so the prompt takes many of them and a cancel lands in the middle.
    engine = load_engine(Settings(slots=2, n_ctx=2048, n_batch=32, share_prefixes=False))
    try:
        text = "A long document about rivers and the sea. " * 120 + prompt_for("CACTUS")
        tokens = engine.tokenize(text)
        scheduler = engine._schedulers[0]

        async def cancel_midway() -> int:
            stream = engine.generate(tokens, GREEDY)
            first = asyncio.ensure_future(anext(stream))
            for _ in range(4000):  # polls the scheduler's progress for at most 20 s
                if scheduler._active and scheduler._active[0].fed >= 8 * 32:
                    break
                await asyncio.sleep(0.005)
            assert scheduler._active, "the request never started"
            fed = scheduler._active[0].fed
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await stream.aclose()
            return fed

        fed = asyncio.run(cancel_midway())
        assert fed < len(tokens) - 32  # really cancelled during the prefill
        retried, cached_tokens = asyncio.run(answer(engine, text))
        # At least what was computed before the cancel was seen (the scheduler may run one
        # more step before it notices).
        assert fed <= cached_tokens < len(tokens) - 1
        assert retried == asyncio.run(answer(uncached, text))[0]
        assert "CACTUS" in retried
    finally:
        engine.close()


def test_past_the_sliding_window_only_prefixes_whose_window_is_still_held_are_reused(
    uncached: LlamaEngine,
) -> None:
    # One slot: its window layers hold n_swa + 512 cells, so a 1,500-token prompt overwrites
    # its own first positions there. The entry is taken when the prompt is in, before
    # generation pushes more of it out; a prefix ending before the held window is not usable.
    engine = load_engine(Settings(slots=1, n_ctx=2048, share_prefixes=False))
    try:
        n_swa = engine._schedulers[0].n_swa
        document = "Facts about glaciers and mountains, numbered. " * 170
        text = document + prompt_for("GLACIER")
        n_prompt = len(engine.tokenize(text))
        assert n_prompt > 2 * n_swa + 300
        params = SamplingParams(max_tokens=24)

        first, _ = asyncio.run(answer(engine, text, params))
        entries = list(engine._schedulers[0].prompt_cache._entries.values())
        assert any(e.pos_min > 0 and len(e.tokens) == n_prompt for e in entries)
        second, second_cached = asyncio.run(answer(engine, text, params))
        # Sharing only the first ~half: those positions left the window layers' cells.
        other = document[: len(document) // 2] + prompt_for("HARBOR")
        _, other_cached = asyncio.run(answer(engine, other, params))

        assert second_cached == n_prompt - 1
        assert other_cached == 0
        assert first == second == asyncio.run(answer(uncached, text, params))[0]
        assert "GLACIER" in first
    finally:
        engine.close()


def test_prompts_too_short_to_be_worth_an_entry_are_not_kept(cached: LlamaEngine) -> None:
    before = cached.prompt_stats().cache_entries
    asyncio.run(answer(cached, "Hi", SamplingParams(max_tokens=2)))
    assert len(cached.tokenize("Hi")) + 2 < MIN_ENTRY_TOKENS
    assert cached.prompt_stats().cache_entries == before


def test_a_burst_shares_its_common_prefix_even_when_the_cache_holds_a_shorter_one(
    uncached: LlamaEngine,
) -> None:
    # Sharing and the cache both on. The cache holds an entry with only ~50 tokens in
    # common with the burst: the first request restores it, and the others still share the
    # whole common prefix with it inside the batch instead of computing it each.
    engine = load_engine(Settings(slots=4, n_ctx=1024))
    try:
        opening = INSTRUCTIONS[: INSTRUCTIONS.index(" Never", 100)]  # ~50 tokens
        asyncio.run(answer(engine, opening + " Tell me about boats.\nAnswer:"))
        texts = [INSTRUCTIONS + prompt_for(w) for w in KEYWORDS[4:8]]
        tokens = [engine.tokenize(t) for t in texts]
        common = min(common_prefix(tokens[0], t) for t in tokens[1:])

        async def burst() -> list[tuple[str, int]]:
            return await asyncio.gather(*(answer(engine, t) for t in texts))

        results = asyncio.run(burst())

        cached = sorted(c for _, c in results)
        assert MIN_ENTRY_TOKENS <= cached[0] < common  # the one that restored the opening
        assert all(c >= common for c in cached[1:])
        for word, (text, _) in zip(KEYWORDS[4:8], results, strict=True):
            assert word in text
    finally:
        engine.close()
