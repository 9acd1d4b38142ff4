"""Start-up speeds on the real model: measured, handed to the step budget, and leaving nothing
in the KV cache (values are this machine's: only their shape is checked, never a speed)."""

from __future__ import annotations

import asyncio

import llama_cpp

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.engine.llama import load_engine


def test_the_engine_measures_its_speeds_at_start_and_leaves_the_cache_empty() -> None:
    engine = load_engine(Settings(slots=3, n_ctx=256, prompt_cache_mb=0))
    try:
        speeds = engine.speeds()
        assert speeds is not None and speeds.slots == 3
        assert speeds.prompt_token_s > 0 and speeds.decode_1_s > 0 and speeds.decode_full_s > 0
        scheduler = engine._schedulers[0]
        assert scheduler.step_budget.prompt_token_s == speeds.prompt_token_s
        for seq_id in range(3):  # the measuring batches are gone from every sequence
            assert llama_cpp.llama_memory_seq_pos_max(scheduler.memory, seq_id) == -1

        # And generation starts from a clean cache: greedy output as deterministic as ever.
        async def once() -> str:
            text = []
            gen = engine.generate(engine.tokenize("1, 2, 3, 4,"), SamplingParams(max_tokens=6))
            async for delta in gen:
                text.append(delta.text)
            return "".join(text)

        first, second = asyncio.run(once()), asyncio.run(once())
        assert first == second and "5" in first
    finally:
        engine.close()


def test_the_pool_engine_reports_no_speeds_for_forecasts() -> None:
    engine = load_engine(Settings(engine="pool", slots=2, n_threads=2, n_ctx=256))
    try:
        assert engine.speeds() is None
    finally:
        engine.close()
