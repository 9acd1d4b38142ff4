"""The scheduler on the real model, with llama_decode failures injected: a failed decode fails
only the requests it concerns, and the engine keeps serving."""

import asyncio
from collections.abc import Iterator
from typing import Any

import llama_cpp
import pytest

from gptapi.config import Settings
from gptapi.engine import EngineError, EngineOverloaded, SamplingParams
from gptapi.engine.llama import LlamaEngine, load_engine

GREEDY_30 = SamplingParams(max_tokens=30)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    engine = load_engine(Settings(slots=2, n_ctx=1024))
    yield engine
    engine.close()


class FailingDecode:
    """Wraps llama_decode; once armed, the next batch with more than one token fails."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.armed = False
        self.fired = 0
        self._real = llama_cpp.llama_decode

    def __call__(self, ctx: Any, batch: Any) -> int:
        if self.armed and batch.n_tokens > 1:
            self.armed = False
            self.fired += 1
            return self.code
        return int(self._real(ctx, batch))


async def collect(engine: LlamaEngine, prompt: str, params: SamplingParams) -> str:
    parts = [d.text async for d in engine.generate(engine.tokenize(prompt), params)]
    return "".join(parts)


async def run_a_then_b(engine: LlamaEngine, fault: FailingDecode) -> tuple[object, object]:
    """A decodes; once it has 3 tokens the fault is armed and B arrives (its prompt + A's
    next token make the batch that fails)."""
    started = asyncio.Event()

    async def run_a() -> str:
        parts = []
        async for delta in engine.generate(engine.tokenize("Once upon a time"), GREEDY_30):
            parts.append(delta.text)
            if len(parts) == 3:
                started.set()
        return "".join(parts)

    a = asyncio.create_task(run_a())
    await started.wait()
    fault.armed = True
    b = asyncio.create_task(collect(engine, "The sky is blue and the grass is", GREEDY_30))
    a_result, b_result = await asyncio.gather(a, b, return_exceptions=True)
    return a_result, b_result


def test_kv_full_on_a_new_request_fails_only_that_request(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    solo = asyncio.run(collect(engine, "Once upon a time", GREEDY_30))
    fault = FailingDecode(code=1)
    monkeypatch.setattr(llama_cpp, "llama_decode", fault)
    a_text, b_error = asyncio.run(run_a_then_b(engine, fault))
    assert fault.fired == 1
    # No room in the KV cache is load, not the request's fault: retryable (the API says 503).
    assert isinstance(b_error, EngineOverloaded)
    assert "no room in the KV cache" in str(b_error)
    # A was rolled back and retried: same text as when it ran alone.
    assert a_text == solo


def test_fatal_decode_error_fails_the_batch_and_the_engine_keeps_serving(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = FailingDecode(code=-3)
    monkeypatch.setattr(llama_cpp, "llama_decode", fault)
    a_result, b_error = asyncio.run(run_a_then_b(engine, fault))
    assert isinstance(a_result, EngineError)
    assert isinstance(b_error, EngineError)
    after = asyncio.run(collect(engine, "The capital of France is", SamplingParams(max_tokens=8)))
    assert after.strip()


def test_every_slot_is_free_after_the_failures(engine: LlamaEngine) -> None:
    async def two_at_once() -> list[str]:
        return await asyncio.gather(
            collect(engine, "One, two, three,", SamplingParams(max_tokens=5)),
            collect(engine, "Red, green,", SamplingParams(max_tokens=5)),
        )

    assert all(text for text in asyncio.run(two_at_once()))


def test_a_burst_reaching_an_idle_engine_shares_its_first_prefill_step(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = llama_cpp.llama_decode
    batches: list[int] = []

    def recording(ctx: Any, batch: Any) -> int:
        batches.append(int(batch.n_tokens))
        return int(real(ctx, batch))

    monkeypatch.setattr(llama_cpp, "llama_decode", recording)
    prompts = ["Once upon a time", "The capital of France is"]
    tokens = [engine.tokenize(p) for p in prompts]

    async def burst() -> None:
        async def one(i: int) -> None:
            await asyncio.sleep(0.003 * i)  # requests parsed a few ms apart
            async for _ in engine.generate(tokens[i], SamplingParams(max_tokens=2)):
                pass

        await asyncio.gather(*(one(i) for i in range(len(prompts))))

    asyncio.run(burst())
    # Both prompts are in the first step; their common <bos> is computed once (shared prefix).
    assert tokens[0][0] == tokens[1][0] and tokens[0][1] != tokens[1][1]
    assert batches[0] == sum(len(t) for t in tokens) - 1
