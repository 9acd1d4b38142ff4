"""Admission: slots, the fair queue between keys, the per-key cap, draining, Retry-After.
Pure asyncio, no engine needed (fast tier)."""

import asyncio

import pytest

from gptapi.admission import Admission
from gptapi.engine import Speeds
from gptapi.errors import DeadlineUnmeetable, KeyBusy, ServerBusy
from gptapi.forecast import Forecast


async def hold(
    admission: Admission, started: list[str], name: str, release: asyncio.Event, key: str = "k"
) -> None:
    ticket = admission.enter(key)
    try:
        while not await admission.wait(ticket, None):
            pass
        started.append(name)
        await release.wait()
    finally:
        admission.leave(ticket)


def test_slots_then_queue_then_503_with_retry_after() -> None:
    async def scenario() -> None:
        admission = Admission(slots=2, max_queue=2)
        release = asyncio.Event()
        started: list[str] = []
        tasks = [
            asyncio.create_task(hold(admission, started, name, release))
            for name in ("a", "b", "c", "d")
        ]
        await asyncio.sleep(0)
        assert started == ["a", "b"]
        assert (admission.busy, admission.queued) == (2, 2)
        with pytest.raises(ServerBusy) as refused:
            admission.enter("other")
        assert int(refused.value.headers["Retry-After"]) >= 1
        release.set()
        await asyncio.gather(*tasks)
        assert started == ["a", "b", "c", "d"]
        assert (admission.busy, admission.queued) == (0, 0)

    asyncio.run(scenario())


def test_keys_take_turns_and_each_key_keeps_its_order() -> None:
    """Key A queues 6 before key B sends 3: B's are served 2nd, 4th and 6th, not after A's."""

    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=20)
        gate = asyncio.Event()
        order: list[str] = []
        first = asyncio.create_task(hold(admission, order, "A0", gate, "A"))
        await asyncio.sleep(0)
        waiting = [
            asyncio.create_task(hold(admission, order, f"A{i}", gate, "A")) for i in range(1, 7)
        ]
        waiting += [
            asyncio.create_task(hold(admission, order, f"B{i}", gate, "B")) for i in range(3)
        ]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *waiting)
        assert order == ["A0", "A1", "B0", "A2", "B1", "A3", "B2", "A4", "A5", "A6"]

    asyncio.run(scenario())


def test_queue_position_follows_the_turns() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=20)
        running = admission.enter("A")
        a = [admission.enter("A") for _ in range(3)]
        b = [admission.enter("B") for _ in range(2)]
        # Served in the order a0 b0 a1 b1 a2.
        assert [admission.position(t) for t in a] == [1, 3, 5]
        assert [admission.position(t) for t in b] == [2, 4]
        assert admission.position(running) == 0
        admission.leave(a[1])  # gives up its place
        assert [admission.position(t) for t in (a[0], b[0], a[2], b[1])] == [1, 2, 3, 4]
        for t in (running, a[0], a[2], *b):
            admission.leave(t)
        assert (admission.busy, admission.queued) == (0, 0)

    asyncio.run(scenario())


def test_a_key_over_its_cap_gets_429_others_still_enter() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=10, max_per_key=2)
        held = [admission.enter("A"), admission.enter("A")]
        with pytest.raises(KeyBusy) as refused:
            admission.enter("A")
        assert int(refused.value.headers["Retry-After"]) >= 1
        other = admission.enter("B")
        admission.leave(held[0])
        again = admission.enter("A")  # one of its requests ended: room again
        for t in (held[1], other, again):
            admission.leave(t)
        assert admission.in_flight("A") == 0

    asyncio.run(scenario())


def test_cancelled_waiter_leaves_the_queue_and_keeps_order() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=3)
        release = asyncio.Event()
        started: list[str] = []
        first = asyncio.create_task(hold(admission, started, "a", release))
        await asyncio.sleep(0)
        waiting = [
            asyncio.create_task(hold(admission, started, n, release)) for n in ("b", "c", "d")
        ]
        await asyncio.sleep(0)
        waiting[1].cancel()  # "c" gives up
        await asyncio.sleep(0)
        assert admission.queued == 2
        release.set()
        await asyncio.gather(first, waiting[0], waiting[2])
        assert started == ["a", "b", "d"]
        assert admission.busy == 0

    asyncio.run(scenario())


def test_slot_handed_over_as_its_waiter_is_cancelled_is_passed_on() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=3)
        running = admission.enter("k")
        queued = admission.enter("k")
        behind = admission.enter("k")
        admission.leave(running)  # hands its slot to `queued`...
        assert queued.holds_slot
        admission.leave(queued)  # ...whose client left before it noticed
        assert behind.holds_slot and admission.busy == 1
        admission.leave(behind)
        assert admission.busy == 0

    asyncio.run(scenario())


def test_drain_refuses_queued_and_new_requests_but_lets_running_ones_finish() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=5)
        release = asyncio.Event()
        started: list[str] = []
        running = asyncio.create_task(hold(admission, started, "a", release))
        await asyncio.sleep(0)
        queued = asyncio.create_task(hold(admission, started, "b", release))
        await asyncio.sleep(0)
        admission.drain()
        with pytest.raises(ServerBusy, match="shutting down"):
            await queued
        with pytest.raises(ServerBusy, match="shutting down"):
            admission.enter("k")
        release.set()
        await running
        assert started == ["a"]
        assert admission.busy == 0

    asyncio.run(scenario())


def test_zero_queue_refuses_as_soon_as_slots_are_full() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=0)
        ticket = admission.enter("k")
        with pytest.raises(ServerBusy):
            admission.enter("k")
        admission.leave(ticket)
        admission.leave(admission.enter("k"))

    asyncio.run(scenario())


def test_retry_after_follows_the_measured_service_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [6.0]
    monkeypatch.setattr("gptapi.admission.time.perf_counter", lambda: now[0])
    admission = Admission(slots=1, max_queue=100)
    assert admission.retry_after_s(ahead=3) == 4  # nothing measured: slots per 1 s hold
    admission._completions.extend([0.0, 2.0, 4.0, 6.0])  # a completion every 2 s
    assert admission.service_rate() == pytest.approx(0.5)
    assert admission.retry_after_s(ahead=10) == 22
    now[0] = 26.0  # nothing completed for 20 s since: the rate is at most 1 per 20 s
    assert admission.retry_after_s(ahead=0) == 20


def test_within_a_key_the_shortest_prompt_goes_first_but_a_long_one_is_not_starved() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=100)
        admission.max_overtaken = 3
        running = admission.enter("k")
        assert running.holds_slot
        document = admission.enter("k")
        document.prompt_tokens = 2500
        shorts = [admission.enter("k") for _ in range(5)]
        for ticket in shorts:
            ticket.prompt_tokens = 20
        other_key = admission.enter("other")  # key turns come first: not passed by "k"'s
        other_key.prompt_tokens = 4000
        assert admission.position(shorts[0]) == 1
        # After 3 shorter ones of its key (its overtakes) and "other", in the turns below.
        assert admission.position(document) == 5
        served = []
        current = running
        for _ in range(7):
            admission.leave(current)
            waiting = [document, *shorts, other_key]
            current = next(t for t in waiting if t.holds_slot and not t.left)
            served.append({document: "doc", other_key: "other"}.get(current, "s"))
        # k, other, k, ...: the document is passed by 3 shorter ones, then goes.
        assert served == ["s", "other", "s", "s", "doc", "s", "s"]
        admission.leave(current)

    asyncio.run(scenario())


def test_a_queued_request_with_little_slack_is_overtaken_only_as_often_as_it_absorbs() -> None:
    async def scenario() -> None:
        admission = Admission(slots=2, max_queue=100)
        # No prompt cost; 40 tokens take 40 s, alone or together.
        admission.forecast = Forecast(
            Speeds(prompt_token_s=0.0, decode_1_s=1.0, decode_full_s=1.0, slots=2)
        )
        running = [admission.enter("k") for _ in range(2)]
        document = admission.enter("k")
        for ticket in (*running, document):
            ticket.max_tokens = 40
        document.prompt_tokens = 2500
        # Both slots free at 40 s: it finishes at 80 s, and still does if one shorter request
        # passes it (they take the two slots together); a second one would push it to 120 s.
        assert admission.finish_s(document, left_s=100.0) == pytest.approx(80.0, abs=0.1)
        assert document.overtake_budget == 1
        admission.finish_s(document, left_s=200.0)
        assert document.overtake_budget == 1  # a budget is never raised again
        shorts = [admission.enter("k") for _ in range(3)]
        for ticket in shorts:
            ticket.prompt_tokens = 20
        assert admission.position(document) == 2  # the shortest one first, then it
        assert admission.position(shorts[1]) == 3
        admission.leave(running[0])
        assert shorts[0].holds_slot
        admission.leave(running[1])
        assert document.holds_slot
        for ticket in (*running, document, *shorts):
            admission.leave(ticket)
        assert admission.busy == 0 and admission.queued == 0

    asyncio.run(scenario())


def test_a_request_is_forecast_with_the_prompts_of_the_requests_beside_it() -> None:
    """Before anything finished, a short prompt admitted beside long ones is forecast to wait
    for theirs too (the mean prompt of the requests holding a slot or queued)."""

    async def scenario() -> None:
        admission = Admission(slots=2, max_queue=2)
        admission.forecast = Forecast(
            Speeds(prompt_token_s=0.01, decode_1_s=0.1, decode_full_s=0.2, slots=2)
        )
        long_one, short_one = admission.enter("k"), admission.enter("k")
        long_one.prompt_tokens, long_one.max_tokens = 190, 10
        short_one.prompt_tokens, short_one.max_tokens = 10, 10
        assert admission.mean_prompt_tokens() == 100
        # Its own 10 tokens and one batch-mate's 100, then 10 steps of two sequences.
        expected = (10 + 100) * 0.01 + 10 * 0.2
        assert admission.finish_s(short_one, left_s=60) == pytest.approx(expected)
        # Queued behind them, a third waits for a slot first: refused if that is too late.
        third = admission.enter("k")
        third.prompt_tokens, third.max_tokens = 100, 10
        with pytest.raises(DeadlineUnmeetable):
            admission.finish_s(third, left_s=expected * 1.5)

    asyncio.run(scenario())
