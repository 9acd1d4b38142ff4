"""Admission control: FIFO slots, bounded queue, draining. Pure asyncio, no engine needed."""

import asyncio

import pytest

from gptapi.errors import ServerBusy
from gptapi.pool import Admission


async def hold(admission: Admission, started: list[str], name: str, release: asyncio.Event) -> None:
    async with admission.slot():
        started.append(name)
        await release.wait()


def test_slots_then_fifo_queue_then_503_with_retry_after() -> None:
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
            async with admission.slot():
                pass
        assert int(refused.value.headers["Retry-After"]) >= 1
        release.set()
        await asyncio.gather(*tasks)
        assert started == ["a", "b", "c", "d"]
        assert (admission.busy, admission.queued) == (0, 0)

    asyncio.run(scenario())


def test_cancelled_waiter_leaves_the_queue_and_keeps_order() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=3)
        release = asyncio.Event()
        started: list[str] = []
        first = asyncio.create_task(hold(admission, started, "a", release))
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


def test_drain_refuses_queued_and_new_requests_but_lets_running_ones_finish() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=5)
        release = asyncio.Event()
        started: list[str] = []
        running = asyncio.create_task(hold(admission, started, "a", release))
        queued = asyncio.create_task(hold(admission, started, "b", release))
        await asyncio.sleep(0)
        admission.drain()
        with pytest.raises(ServerBusy, match="shutting down"):
            await queued
        with pytest.raises(ServerBusy, match="shutting down"):
            async with admission.slot():
                pass
        release.set()
        await running
        assert started == ["a"]
        assert admission.busy == 0

    asyncio.run(scenario())


def test_zero_queue_refuses_as_soon_as_slots_are_full() -> None:
    async def scenario() -> None:
        admission = Admission(slots=1, max_queue=0)
        async with admission.slot():
            with pytest.raises(ServerBusy):
                async with admission.slot():
                    pass
        async with admission.slot() as queue_s:
            assert queue_s >= 0

    asyncio.run(scenario())
