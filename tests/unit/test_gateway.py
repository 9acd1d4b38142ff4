"""The gateway's order of checks and its events, with a fake engine (fast tier: no claim about the
real engine, only about the code around it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import pytest

from gptapi.engine import Delta, SamplingParams
from gptapi.errors import KeyBusy, ServerBusy, TokenBudgetExhausted
from gptapi.gateway import Completion, Gateway, Waiting
from gptapi.telemetry.requestlog import RequestRecord
from tests import fakes

PARAMS = SamplingParams(max_tokens=4)


@dataclass
class FakeEngine(fakes.FakeEngine):
    """One slot; each sequence reports prompt progress, then waits for `release` before
    producing its tokens."""

    slots: int = 1
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def tokenized(self) -> int:
        return len(self.prompts)

    async def generate(
        self, tokens: list[int], params: SamplingParams, *, scope: str = ""
    ) -> AsyncGenerator[Delta, None]:
        yield Delta("", 0, None, 0, prompt_done=len(tokens) // 2)
        await self.release.wait()
        for i in range(1, params.max_tokens + 1):
            yield Delta(f" t{i}", i, "length" if i == params.max_tokens else None)


class Budget:
    def __init__(self, tokens: int) -> None:
        self.left = tokens
        self.counted: list[int] = []

    def take_tokens(self, key_id: str, cost: int) -> None:
        if cost > self.left:
            raise TokenBudgetExhausted("over", headers={"Retry-After": "7"})
        self.left -= cost

    def count_tokens(self, key_id: str, cost: int) -> None:
        self.counted.append(cost)


def record(key: str = "k") -> RequestRecord:
    return RequestRecord(request_id="r", route="/x", method="POST", key_id=key)


def make_gateway(engine: FakeEngine, **kwargs: object) -> Gateway:
    options: dict[str, object] = {"max_queue": 1, "request_timeout_s": 30, **kwargs}
    return Gateway(engine, **options)  # type: ignore[arg-type]


async def events_of(gateway: Gateway, prompt: str, key: str = "k") -> list[object]:
    return [e async for e in gateway.stream(prompt, PARAMS, record=record(key))]


def test_a_full_server_refuses_before_tokenizing() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        gateway = make_gateway(engine, max_queue=0)
        running = gateway.stream("one two three", PARAMS, record=record())
        assert isinstance(await anext(running), Waiting)  # admitted: holds the only slot
        assert engine.tokenized == 1
        with pytest.raises(ServerBusy):
            await events_of(gateway, "four five")
        assert engine.tokenized == 1  # refused without tokenizing
        await running.aclose()

    asyncio.run(scenario())


def test_a_key_over_its_cap_is_refused_before_tokenizing() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        gateway = make_gateway(engine, max_queue=5, max_per_key=1)
        running = gateway.stream("one two", PARAMS, record=record("A"))
        await anext(running)
        with pytest.raises(KeyBusy):
            await events_of(gateway, "three", key="A")
        assert engine.tokenized == 1
        other = gateway.stream("three four", PARAMS, record=record("B"))
        assert await anext(other) == Waiting(queue_position=1, prompt_done=0, prompt_tokens=2)
        await other.aclose()
        await running.aclose()

    asyncio.run(scenario())


def test_queued_request_gets_waiting_events_with_its_position_then_tokens() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        gateway = make_gateway(engine, keepalive_s=0.01)
        first = asyncio.create_task(events_of(gateway, "a b c d"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(events_of(gateway, "e f g h i j"))
        await asyncio.sleep(0.1)  # queued behind `first` for several keepalive periods
        engine.release.set()
        seen = await second
        await first
        queued = [e for e in seen if isinstance(e, Waiting) and e.queue_position > 0]
        assert queued[0] == Waiting(1, 0, 6)
        assert len(queued) >= 3 and all(w.queue_position == 1 for w in queued)
        assert [e.text for e in seen if isinstance(e, Delta)] == [" t1", " t2", " t3", " t4"]
        assert isinstance(seen[-1], Completion) and seen[-1].text == " t1 t2 t3 t4"

    asyncio.run(scenario())


def test_prompt_progress_is_reported_while_the_prompt_is_computed() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        gateway = make_gateway(engine, keepalive_s=0.01)
        stream = gateway.stream("a b c d e f", PARAMS, record=record())
        assert await anext(stream) == Waiting(0, 0, 6)  # admitted at once
        await asyncio.sleep(0.02)  # a keepalive period passes before the engine's progress
        assert await anext(stream) == Waiting(0, 3, 6)
        engine.release.set()
        rest = [e async for e in stream]
        assert isinstance(rest[-1], Completion)

    asyncio.run(scenario())


def test_token_budget_refuses_a_prompt_that_does_not_fit_and_counts_completions() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        engine.release.set()
        budget = Budget(tokens=5)
        gateway = make_gateway(engine, token_limits=budget)
        events = await events_of(gateway, "a b c")
        assert isinstance(events[-1], Completion)
        assert budget.left == 2
        assert budget.counted == [4]  # counted before the result went out
        with pytest.raises(TokenBudgetExhausted):
            await events_of(gateway, "d e f")
        assert budget.counted == [4]
        assert gateway.admission.busy == 0 and gateway.admission.in_flight("k") == 0

    asyncio.run(scenario())


def test_each_key_reuses_computed_prompts_only_in_its_own_scope_unless_grouped() -> None:
    from gptapi.config import cache_groups
    from gptapi.gateway import cache_scope_for

    async def scopes(**kwargs: object) -> list[str]:
        engine = fakes.FakeEngine()
        gateway = make_gateway(engine, max_queue=4, **kwargs)
        for key in ("aaaaaaaa", "bbbbbbbb", "cccccccc"):
            await events_of(gateway, "same prompt", key=key)
        return engine.scopes

    by_key = asyncio.run(scopes())
    assert len(set(by_key)) == 3  # the default: one scope per key
    grouped = cache_scope_for(cache_groups("team=aaaaaaaa,bbbbbbbb"))
    a, b, c = asyncio.run(scopes(cache_scope=grouped))
    assert a == b != c
    shared = cache_scope_for(cache_groups("*"))
    assert len(set(asyncio.run(scopes(cache_scope=shared)))) == 1


@pytest.mark.parametrize(
    "spec",
    ["team", "=aaaaaaaa", "team=not-an-id", "team=aaaaaaaa;other=aaaaaaaa", "team=aaaaaaa"],
)
def test_a_malformed_cache_group_setting_is_refused(spec: str) -> None:
    from pydantic import ValidationError

    from gptapi.config import Settings

    with pytest.raises(ValidationError):
        Settings(prompt_cache_groups=spec)
