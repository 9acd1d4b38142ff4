"""Step-time target: the sizing rule (fast), and on the real model a running stream keeps
getting tokens while long prompts are computed."""

from __future__ import annotations

import asyncio
import time

import pytest

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.engine.llama import load_engine
from gptapi.engine.step_budget import MIN_PROMPT_TOKENS, StepBudget


def test_nobody_decoding_or_no_target_means_the_whole_batch() -> None:
    assert StepBudget(0.5).prompt_tokens(0, 512) == 512
    assert StepBudget(0.0).prompt_tokens(8, 504) == 504


def test_chunk_fills_what_decoding_leaves_of_the_target() -> None:
    budget = StepBudget(0.5)
    assert budget.prompt_tokens(4, 508) == 32  # prompt speed unknown: a probe chunk
    budget.observe(0, 200, 0.2)  # 1 ms per prompt token
    budget.observe(4, 0, 0.1)  # 4 decoding tokens alone: 100 ms
    assert budget.prompt_tokens(4, 508) == 400  # (500 - 100) ms / 1 ms
    assert budget.prompt_tokens(4, 100) == 100  # never more than the batch has room for
    for _ in range(20):
        budget.observe(4, 0, 0.6)  # decoding got slower than the target itself
    assert budget.prompt_tokens(4, 508) == MIN_PROMPT_TOKENS  # prompts still advance
    assert budget.decode_s(8) == pytest.approx(2 * budget.decode_s(4))  # scaled from 4


def test_only_unstreamed_requests_decoding_use_their_own_target() -> None:
    budget = StepBudget(0.5)  # unstreamed: no target
    budget.observe(0, 200, 0.2)
    budget.observe(4, 0, 0.1)
    assert budget.prompt_tokens(4, 508, streaming=False) == 508
    assert budget.prompt_tokens(4, 508, streaming=True) == 400
    bounded = StepBudget(0.5, unstreamed_target_s=1.1)
    bounded.observe(0, 200, 0.2)
    bounded.observe(4, 0, 0.1)
    assert bounded.prompt_tokens(4, 2044, streaming=False) == 1000  # (1100 - 100) ms / 1 ms


def test_mixed_steps_teach_the_prompt_speed() -> None:
    budget = StepBudget(1.0)
    budget.observe(2, 0, 0.1)
    budget.observe(2, 100, 0.3)  # 0.2 s of prompt for 100 tokens
    assert budget.prompt_token_s == pytest.approx(0.002)
    budget.observe(2, 10, 0.105)  # mostly decoding: too noisy to learn from
    assert budget.prompt_token_s == pytest.approx(0.002)


def test_a_stream_keeps_its_pace_while_two_2000_token_prompts_are_computed() -> None:
    """Without the target a step would carry 2,048 prompt tokens (seconds on 2 cores) and the
    stream would get nothing meanwhile. The gap bound is 3x the target, as the issue asks."""
    target_ms = 200
    engine = load_engine(
        Settings(slots=4, n_ctx=2304, n_batch=2048, step_target_ms=target_ms, prompt_cache_mb=0)
    )
    try:
        long_prompts = [
            engine.tokenize(" ".join(f"{k}{i}" for i in range(1000)))[:2000] for k in "xy"
        ]
        assert all(len(p) == 2000 for p in long_prompts)

        async def scenario() -> tuple[list[float], float, float]:
            arrivals: list[float] = []
            prompts_done = asyncio.Event()
            started = asyncio.Event()

            async def stream() -> None:
                counting = engine.tokenize("1, 2, 3, 4, 5, 6, 7, 8, 9, 10,")
                async for _ in engine.generate(counting, SamplingParams(max_tokens=1000)):
                    arrivals.append(time.perf_counter())
                    if len(arrivals) == 5:
                        started.set()
                    if prompts_done.is_set():
                        return

            async def prefill(tokens: list[int]) -> None:
                async for _ in engine.generate(tokens, SamplingParams(max_tokens=1)):
                    pass

            streaming = asyncio.create_task(stream())
            await started.wait()
            began = time.perf_counter()
            await asyncio.gather(*(prefill(p) for p in long_prompts))
            ended = time.perf_counter()
            prompts_done.set()
            await streaming
            return arrivals, began, ended

        arrivals, began, ended = asyncio.run(scenario())
    finally:
        engine.close()
    during = [t for t in arrivals if began <= t <= ended]
    assert arrivals[-1] >= ended, "the stream ended before the prompts did: nothing measured"
    gaps = [b - a for a, b in zip([began, *during], [*during, ended], strict=True)]
    assert len(during) >= 5
    assert max(gaps) <= 3 * target_ms / 1000, f"largest gap {max(gaps):.3f} s"


@pytest.mark.parametrize("streamed", [True, False])
def test_a_long_prompt_beside_an_unstreamed_decode_takes_whole_chunks(streamed: bool) -> None:
    """A client that does not stream waits for its whole answer: while only such requests
    decode, a long prompt goes in n_batch chunks (few steps); beside a stream it is spread over
    steps near the target. Counted by the progress deltas, one per step of the prompt."""
    engine = load_engine(
        Settings(slots=2, n_ctx=2304, n_batch=512, step_target_ms=100, prompt_cache_mb=0)
    )
    try:
        long_prompt = engine.tokenize(" ".join(f"z{i}" for i in range(1000)))[:1500]

        async def scenario() -> int:
            started = asyncio.Event()
            done = asyncio.Event()

            async def decode() -> None:
                counting = engine.tokenize("1, 2, 3, 4, 5, 6, 7, 8, 9, 10,")
                params = SamplingParams(max_tokens=2000, streamed=streamed)
                async for delta in engine.generate(counting, params):
                    if delta.completion_tokens >= 3:
                        started.set()
                    if done.is_set():
                        return

            decoding = asyncio.create_task(decode())
            await started.wait()
            steps = 0
            async for delta in engine.generate(long_prompt, SamplingParams(max_tokens=1)):
                steps += delta.is_progress
            done.set()
            await decoding
            return steps

        prompt_steps = asyncio.run(scenario())
    finally:
        engine.close()
    if streamed:
        assert prompt_steps > 6, prompt_steps  # 100 ms steps: ~30-60 tokens each here
    else:
        assert prompt_steps <= 3, prompt_steps  # 511 + 511 + 478: the last one's delta is the token
