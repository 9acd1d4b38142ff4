"""The gateway's order of checks and its events, with a fake engine (fast tier: no claim about the
real engine, only about the code around it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import pytest

from gptapi.engine import Delta, SamplingParams, Speeds
from gptapi.errors import DeadlineUnmeetable, KeyBusy, ServerBusy, TokenBudgetExhausted
from gptapi.gateway import Completion, Gateway, Waiting
from gptapi.telemetry.metrics import Metrics
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


def trained(gateway: Gateway, interval_s: float = 1.0) -> None:
    """The forecast as if three 4-token requests had finished, a token every ``interval_s``
    from the moment they held a slot."""
    for _ in range(3):
        gateway.admission.forecast.finished(
            prompt_tokens=4,
            cached_tokens=0,
            completion_tokens=4,
            max_tokens=4,
            first_token_s=interval_s,
            held_s=4 * interval_s,
        )


def test_a_request_that_would_finish_past_its_deadline_is_refused_at_once() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        metrics = Metrics()
        gateway = make_gateway(engine, metrics=metrics)
        trained(gateway)  # 4 tokens take ~4 s here
        with pytest.raises(DeadlineUnmeetable) as refused:
            await anext(gateway.stream("a b", PARAMS, record=record(), timeout_s=2))
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert refused.value.code == "deadline_unmeetable"
        assert gateway.admission.busy == 0 and gateway.admission.in_flight("k") == 0
        refusals = metrics.registry.get_sample_value(
            "gptapi_refusals_total", {"reason": "deadline"}
        )
        assert refusals == 1
        # With time enough it is served, and counts as accepted and finished in time.
        engine.release.set()
        rec = record()
        events = [e async for e in gateway.stream("a b", PARAMS, record=rec, timeout_s=30)]
        assert isinstance(events[-1], Completion)
        assert rec.forecast_ms is not None and rec.forecast_ms >= 4000
        assert metrics.registry.get_sample_value("gptapi_accepted_requests_total") == 1
        assert metrics.registry.get_sample_value("gptapi_finished_in_time_requests_total") == 1

    asyncio.run(scenario())


def test_a_queued_request_is_refused_if_the_work_ahead_leaves_it_too_little_time() -> None:
    async def scenario() -> None:
        engine = FakeEngine()  # one slot, held until `release`
        gateway = make_gateway(engine)
        trained(gateway)
        running = gateway.stream("a b", PARAMS, record=record("A"), timeout_s=30)
        await anext(running)  # holds the slot: ~4 s of work left
        # Alone it would fit in 6 s; behind ~4 s of work it would finish at ~8 s.
        with pytest.raises(DeadlineUnmeetable):
            await anext(gateway.stream("c d", PARAMS, record=record("B"), timeout_s=6))
        waiting = gateway.stream("c d", PARAMS, record=record("B"), timeout_s=10)
        assert await anext(waiting) == Waiting(queue_position=1, prompt_done=0, prompt_tokens=2)
        await waiting.aclose()
        await running.aclose()

    asyncio.run(scenario())


def test_without_measured_completions_nothing_is_refused_by_forecast() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        engine.release.set()
        gateway = make_gateway(engine)
        events = await events_of(gateway, "a b")  # no evidence yet: served
        assert isinstance(events[-1], Completion)

    asyncio.run(scenario())


def test_a_queued_request_is_refused_once_what_is_measured_meanwhile_shows_it_is_late() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        gateway = make_gateway(engine, keepalive_s=0.01)
        running = gateway.stream("a b", PARAMS, record=record("A"), timeout_s=30)
        await anext(running)
        queued = gateway.stream("c d", PARAMS, record=record("B"), timeout_s=6)
        assert await anext(queued) == Waiting(1, 0, 2)  # a fresh server: no evidence yet
        trained(gateway)  # requests that finished meanwhile: a token a second
        with pytest.raises(DeadlineUnmeetable):
            await anext(queued)
        assert gateway.admission.queued == 0
        await running.aclose()

    asyncio.run(scenario())


def test_a_burst_on_a_fresh_server_is_forecast_from_the_start_up_speeds() -> None:
    """Nothing served yet: the engine's start-up speeds say which requests of a burst can finish
    in time; those that cannot are refused at once, the rest wait."""

    async def scenario() -> None:
        speeds = Speeds(prompt_token_s=0.0, decode_1_s=1.0, decode_full_s=1.0, slots=1)
        engine = FakeEngine(measured=speeds)  # one slot; 4 tokens take ~4 s
        gateway = make_gateway(engine, max_queue=10)
        streams = [
            gateway.stream(f"p{i}", PARAMS, record=record(f"k{i}"), timeout_s=10) for i in range(4)
        ]
        outcomes: list[str] = []
        for stream in streams:
            try:
                await anext(stream)
                outcomes.append("waits")
            except DeadlineUnmeetable:
                outcomes.append("refused")
        # ~4 s each, one at a time, within 10 s: the first two fit, the others would not.
        assert outcomes == ["waits", "waits", "refused", "refused"]
        for stream in streams:
            await stream.aclose()

    asyncio.run(scenario())


def test_a_shorter_request_admitted_later_does_not_pass_one_it_would_make_late() -> None:
    """Within a key the shortest prompt goes first, but not past a queued request whose
    forecast leaves no room for it: the promise made at its admission holds."""

    async def scenario() -> None:
        speeds = Speeds(prompt_token_s=0.0, decode_1_s=1.0, decode_full_s=1.0, slots=1)
        engine = FakeEngine(measured=speeds)  # one slot; 4 tokens take ~4 s
        gateway = make_gateway(engine, max_queue=10)
        running = gateway.stream("a", PARAMS, record=record(), timeout_s=30)
        await anext(running)  # holds the slot for ~4 s
        # Behind it, ~8 s to finish with 9 s left: no room to be passed by a 4-s request.
        tight = gateway.stream("w w w w w w", PARAMS, record=record(), timeout_s=9)
        roomy = gateway.stream("x x x x x x", PARAMS, record=record(), timeout_s=30)
        short = gateway.stream("y", PARAMS, record=record(), timeout_s=30)
        for stream in (tight, roomy, short):
            assert isinstance(await anext(stream), Waiting)
        order = sorted(gateway.admission._queues["k"], key=gateway.admission.position)
        assert [t.prompt_tokens for t in order] == [6, 1, 6]  # tight, short, then roomy
        for stream in (running, tight, roomy, short):
            await stream.aclose()

    asyncio.run(scenario())


def test_a_request_is_admitted_only_with_the_margin_its_forecast_needs() -> None:
    """Start-up speeds are an idle server's: admission asks for the forecast x the margin to fit,
    while a request already waiting is re-checked with a tolerance instead."""

    async def scenario() -> None:
        speeds = Speeds(prompt_token_s=0.0, decode_1_s=1.0, decode_full_s=1.0, slots=1)
        outcomes = []
        for margin in (1.0, 1.5):
            engine = FakeEngine(measured=speeds)  # one slot; 4 tokens take ~4 s
            engine.release.set()
            gateway = make_gateway(engine, deadline_margin=margin)
            try:
                # ~4 s of work within 5 s: fits as forecast, not with half again on top.
                events = [
                    e async for e in gateway.stream("a", PARAMS, record=record(), timeout_s=5)
                ]
                outcomes.append(type(events[-1]).__name__)
            except DeadlineUnmeetable:
                outcomes.append("refused")
        assert outcomes == ["Completion", "refused"]

    asyncio.run(scenario())
