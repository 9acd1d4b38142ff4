"""Admission control and the one code path from a request into the engine.

``slots`` requests decode at once; up to ``max_queue`` more wait in FIFO order; beyond that a
request is refused at once with 503 and ``Retry-After`` instead of piling up. A request that
cannot fit a slot's context is refused before it queues. Every request has a wall-clock limit,
queue time included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import NoReturn

import psutil

from gptapi.engine import Delta, Engine, EngineError, FinishReason, SamplingParams
from gptapi.errors import ContextLengthExceeded, GenerationFailed, RequestTimeout, ServerBusy
from gptapi.metrics import Metrics
from gptapi.requestlog import RequestRecord

log = logging.getLogger("gptapi.pool")


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    cached_tokens: int  # of prompt_tokens, those not computed (prompt cache, concurrent sharing)
    completion_tokens: int
    queue_s: float
    ttft_s: float | None  # from arrival to the first generated token
    total_s: float

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - (self.ttft_s or 0.0)
        if self.completion_tokens <= 1 or decode_s <= 0:
            return 0.0
        # The first token's time is queue + prompt processing; the rate covers those after it.
        return (self.completion_tokens - 1) / decode_s


class Admission:
    """A FIFO semaphore with a bounded queue, whose occupancy can be read at any time."""

    def __init__(self, slots: int, max_queue: int) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.busy = 0
        self.draining = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._service_s = 1.0  # moving average of slot hold time, for Retry-After

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> int:
        # Roughly when a slot frees up for the queue ahead, at least 1 s.
        waves = (self.queued + 1) / self.slots
        return max(1, math.ceil(self._service_s * waves))

    @asynccontextmanager
    async def slot(self, deadline: float | None = None) -> AsyncIterator[float]:
        """Hold a slot for the block; yields the seconds spent queuing. Waiting ends with
        TimeoutError at ``deadline`` (event-loop time)."""
        enqueued = time.perf_counter()
        async with asyncio.timeout_at(deadline):
            await self._acquire()
        acquired = time.perf_counter()
        try:
            yield acquired - enqueued
        finally:
            held = time.perf_counter() - acquired
            self._service_s = 0.8 * self._service_s + 0.2 * held
            self._release()

    async def _acquire(self) -> None:
        if self.draining:
            raise ServerBusy("server is shutting down", self.retry_after_s(), reason="draining")
        if self.busy < self.slots and not self._waiters:
            self.busy += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise ServerBusy(
                f"server busy: {self.busy} requests decoding and {self.queued} queued "
                f"(limit {self.max_queue}); retry later",
                self.retry_after_s(),
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _release hands its slot over: busy is unchanged
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release()  # handed a slot just as we were cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.busy -= 1

    def drain(self) -> None:
        """Stop admitting: queued requests get 503 now, new ones at once."""
        self.draining = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    ServerBusy("server is shutting down", self.retry_after_s(), reason="draining")
                )


class InferencePool:
    def __init__(
        self,
        engine: Engine,
        *,
        max_queue: int,
        request_timeout_s: float,
        min_free_bytes: int = 0,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.admission = Admission(engine.slots, max_queue)
        self.request_timeout_s = request_timeout_s
        self.min_free_bytes = min_free_bytes
        self.metrics = metrics
        if metrics is not None:
            metrics.track_admission(
                lambda: self.admission.busy, lambda: self.admission.queued, engine.slots
            )
            metrics.track_prompt_stats(engine.prompt_stats)

    def _refuse(self, exc: ServerBusy | ContextLengthExceeded, reason: str) -> NoReturn:
        if self.metrics is not None:
            self.metrics.refusals.labels(reason).inc()
        raise exc

    def _guard_memory(self) -> None:
        if not self.min_free_bytes:
            return
        available = psutil.virtual_memory().available
        if available < self.min_free_bytes:
            self._refuse(
                ServerBusy(
                    f"low memory: {available // 2**20} MiB available, below the "
                    f"{self.min_free_bytes // 2**20} MiB guard; retry later",
                    self.admission.retry_after_s(),
                    reason="low_memory",
                ),
                "low_memory",
            )

    async def tokens_for(self, prompt: str, params: SamplingParams) -> list[int]:
        """Tokenize and refuse, before queuing, what no slot could hold."""
        tokens = await asyncio.to_thread(self.engine.tokenize, prompt)
        n_ctx = self.engine.info.n_ctx
        if len(tokens) + params.max_tokens > n_ctx:
            self._refuse(
                ContextLengthExceeded(
                    f"prompt ({len(tokens)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                    f"the context window of a slot ({n_ctx} tokens)"
                ),
                "context_length",
            )
        return tokens

    async def stream(
        self, prompt: str, params: SamplingParams, *, record: RequestRecord
    ) -> AsyncGenerator[Delta | Completion, None]:
        """The one path into the engine: yields each delta as the engine produces it, then the
        Completion. Refusals (busy, low memory, too long) raise before the first delta."""
        arrived = time.perf_counter()
        # A deadline, not asyncio.timeout around the body: the body yields to the consumer,
        # and only our own waits may be cut short.
        deadline = asyncio.get_running_loop().time() + self.request_timeout_s
        self._guard_memory()
        tokens = await self.tokens_for(prompt, params)
        record.prompt_tokens = len(tokens)
        record.busy_slots_at_admission = self.admission.busy
        record.queue_depth_at_admission = self.admission.queued
        parts: list[str] = []
        n_out = cached = 0
        finish: FinishReason = "length"
        ttft_s: float | None = None
        queue_s = 0.0
        try:
            async with (
                self.admission.slot(deadline) as queue_s,
                aclosing(self.engine.generate(tokens, params)) as deltas,
            ):
                record.queue_ms = queue_s * 1000
                while True:
                    async with asyncio.timeout_at(deadline):
                        delta = await anext(deltas, None)
                    if delta is None:
                        break
                    if ttft_s is None:
                        ttft_s = time.perf_counter() - arrived
                        record.ttft_ms = ttft_s * 1000
                    parts.append(delta.text)
                    n_out = record.completion_tokens = delta.completion_tokens
                    cached = record.cached_tokens = delta.cached_tokens
                    if delta.finish_reason is not None:
                        finish = delta.finish_reason
                    yield delta
        except ServerBusy as exc:
            self._refuse(exc, exc.reason)
        except TimeoutError:
            log.warning(
                "request %s ended: timeout after %.1f s (%d tokens generated)",
                record.request_id,
                self.request_timeout_s,
                n_out,
            )
            raise RequestTimeout(
                f"request exceeded the {self.request_timeout_s:g} s time limit"
            ) from None
        except EngineError as exc:
            log.error("request %s ended: engine error: %s", record.request_id, exc)
            raise GenerationFailed(str(exc)) from None
        finally:
            self._observe(record, queue_s, ttft_s, n_out)
        result = Completion(
            text="".join(parts),
            finish_reason=finish,
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            completion_tokens=n_out,
            queue_s=queue_s,
            ttft_s=ttft_s,
            total_s=time.perf_counter() - arrived,
        )
        record.end_reason = finish
        record.tokens_per_s = result.tokens_per_s
        yield result

    async def complete(
        self, prompt: str, params: SamplingParams, *, record: RequestRecord
    ) -> Completion:
        async with aclosing(self.stream(prompt, params, record=record)) as events:
            async for event in events:
                if isinstance(event, Completion):
                    return event
        raise GenerationFailed("generation ended without a result")  # pragma: no cover

    def _observe(
        self, record: RequestRecord, queue_s: float, ttft_s: float | None, n_out: int
    ) -> None:
        if self.metrics is None or record.queue_ms is None:
            return  # refused before admission: counted as a refusal only
        m = self.metrics
        m.queue_seconds.observe(queue_s)
        if ttft_s is not None:
            m.ttft_seconds.observe(ttft_s)
        m.completion_tokens_per_request.observe(n_out)
        m.prompt_tokens.inc(record.prompt_tokens or 0)
        m.completion_tokens.inc(n_out)

    def close(self) -> None:
        self.admission.drain()
        self.engine.close()
