"""The one code path from a request into the engine.

In order, each step cheaper than the next: the memory guard, admission (a slot or a place in
the fair queue, else 503/429 at once — before tokenizing), tokenizing and the context check,
the key's token budget, the deadline forecast (503 at once for a request that would finish
past its deadline: ``forecast.py``), then waiting for the slot and generating. Every request
has a wall-clock limit, queue time included: the server's, or a shorter one the client asks
for. While a request has no token yet, ``Waiting`` events
(queue position, then prompt progress) come every ``keepalive_s`` so streams can show life.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import NoReturn, Protocol

from gptapi.admission import Admission, Ticket
from gptapi.engine import (
    Delta,
    Engine,
    EngineError,
    EngineOverloaded,
    FinishReason,
    Prompt,
    SamplingParams,
    TokenLogprob,
)
from gptapi.errors import (
    ContextLengthExceeded,
    DeadlineUnmeetable,
    EngineUnavailable,
    GenerationFailed,
    GptapiError,
    KeyBusy,
    RefusalReason,
    RequestTimeout,
    ServerBusy,
    TokenBudgetExhausted,
)
from gptapi.telemetry.headroom import MemoryLimit
from gptapi.telemetry.metrics import Metrics
from gptapi.telemetry.requestlog import RequestRecord

log = logging.getLogger("gptapi.gateway")
# A queued request is refused later only if its forecast finish passes its deadline by this
# factor (docs/stress-test.md: deadline forecast).
_RECHECK_TOLERANCE = 1.15


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
    logprobs: tuple[TokenLogprob, ...] = ()  # per generated token, when the request asked

    @property
    def tokens_per_s(self) -> float:
        return decode_rate(self.completion_tokens, self.total_s, self.ttft_s)


def decode_rate(completion_tokens: int, total_s: float, ttft_s: float | None) -> float:
    decode_s = total_s - (ttft_s or 0.0)
    if completion_tokens <= 1 or decode_s <= 0:
        return 0.0
    # The first token's time is queue + prompt processing; the rate covers those after it.
    return (completion_tokens - 1) / decode_s


@dataclass(frozen=True)
class Waiting:
    """No token yet: the request's place in the queue (0: it holds a slot), then how much of
    its prompt is computed."""

    queue_position: int
    prompt_done: int
    prompt_tokens: int


class TokenLimits(Protocol):
    """Per-key token budget (prompt + completion); may block (a networked store)."""

    def take_tokens(self, key_id: str, cost: int) -> None: ...

    def count_tokens(self, key_id: str, cost: int) -> None: ...


def cache_scope_for(groups: dict[str, str] | None) -> Callable[[str], str]:
    """The scope in which a key's requests reuse computed prompt KV: the key itself, its group
    (GPTAPI_PROMPT_CACHE_GROUPS), or one scope for every key (None, '*')."""
    if groups is None:
        return lambda key_id: ""
    return lambda key_id: f"group:{groups[key_id]}" if key_id in groups else f"key:{key_id}"


class Gateway:
    def __init__(
        self,
        engine: Engine,
        *,
        max_queue: int,
        request_timeout_s: float,
        refuse_late: bool = True,
        deadline_margin: float = 1.0,
        max_per_key: int | None = None,
        min_free_bytes: int = 0,
        memory_limit: MemoryLimit | None = None,
        keepalive_s: float = 10.0,
        token_limits: TokenLimits | None = None,
        metrics: Metrics | None = None,
        cache_scope: Callable[[str], str] = lambda key_id: f"key:{key_id}",
    ) -> None:
        self.engine = engine
        self.cache_scope = cache_scope
        self.admission = Admission(engine.slots, max_queue, max_per_key)
        self.request_timeout_s = request_timeout_s
        self.refuse_late = refuse_late
        self.deadline_margin = deadline_margin
        self.min_free_bytes = min_free_bytes
        self.memory_limit = memory_limit or MemoryLimit.detect()
        self.keepalive_s = keepalive_s
        self.token_limits = token_limits
        self.metrics = metrics
        if metrics is not None:
            metrics.track_admission(
                lambda: self.admission.busy, lambda: self.admission.queued, engine.slots
            )
            metrics.track_prompt_stats(engine.prompt_stats)

    def _refuse(self, exc: GptapiError, reason: RefusalReason) -> NoReturn:
        if self.metrics is not None:
            self.metrics.refusals.labels(reason).inc()
        raise exc

    def _guard_memory(self) -> None:
        if not self.min_free_bytes:
            return
        # The cgroup's headroom when the process is limited (unit, container), else the host's.
        available = self.memory_limit.read().available_bytes
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

    async def tokens_for(self, prompt: Prompt, params: SamplingParams) -> list[int]:
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

    def _check_deadline(
        self,
        ticket: Ticket,
        params: SamplingParams,
        left_s: float,
        tolerance: float = 1.0,
    ) -> float | None:
        """Refuse now what the forecast says would finish more than ``left_s`` x ``tolerance``
        from now. Returns the expected seconds to finish (None: no evidence yet)."""
        forecast = self.admission.forecast
        # Start-up speeds, then the decode steps as served (engine/base.py Speeds.after_step).
        forecast.speeds = self.engine.speeds() or forecast.speeds
        ticket.max_tokens = params.max_tokens  # prompt_tokens: set once tokenized
        if not self.refuse_late:
            return None
        try:
            return self.admission.finish_s(ticket, left_s, tolerance)
        except DeadlineUnmeetable as exc:
            self._refuse(exc, "deadline")

    async def stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        record: RequestRecord,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[Delta | Waiting | Completion, None]:
        """The one path into the engine: yields a first ``Waiting`` once the request is
        admitted, more while it has no token, each delta as the engine produces it, then the
        Completion. Refusals (busy, key cap, low memory, too long, token budget, deadline)
        raise before the first event; a deadline refusal may also come while queued.
        ``timeout_s``: the client's own limit, if shorter than the server's."""
        arrived = time.perf_counter()
        loop = asyncio.get_running_loop()
        limit_s = min(self.request_timeout_s, timeout_s or self.request_timeout_s)
        # A deadline, not asyncio.timeout around the body: the body yields to the consumer,
        # and only our own waits may be cut short.
        deadline = loop.time() + limit_s
        key = record.key_id or "-"
        if not self.engine.healthy():
            self._refuse(EngineUnavailable(), "engine_unavailable")
        self._guard_memory()
        record.admitted(self.admission.busy, self.admission.queued)
        try:
            ticket = self.admission.enter(key)
        except KeyBusy as exc:
            self._refuse(exc, "key_in_flight")
        except ServerBusy as exc:
            self._refuse(exc, exc.reason)
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        n_out = cached = 0
        finish: FinishReason = "length"
        ttft_s: float | None = None
        queue_s = 0.0
        forecast_s: float | None = None  # set once admitted
        finished = False
        forecast = self.admission.forecast
        try:
            tokens = await self.tokens_for(prompt, params)
            ticket.prompt_tokens = len(tokens)  # queued: shorter prompts of its key go first
            record.tokenized(len(tokens))
            if self.token_limits is not None:
                try:
                    await asyncio.to_thread(self.token_limits.take_tokens, key, len(tokens))
                except TokenBudgetExhausted as exc:
                    self._refuse(exc, "token_rate")
            # Admitted with a margin (start-up speeds are an idle server's); re-checked with a
            # tolerance instead: it has paid for its wait already.
            forecast_s = self._check_deadline(
                ticket, params, deadline - loop.time(), 1 / self.deadline_margin
            )
            if forecast_s is not None:
                record.forecast(time.perf_counter() - arrived + forecast_s)
            if self.metrics is not None:
                self.metrics.accepted.inc()
            yield Waiting(self.admission.position(ticket), 0, len(tokens))
            while not await self.admission.wait(
                ticket, min(self.keepalive_s, max(0.0, deadline - loop.time()))
            ):
                if loop.time() >= deadline:
                    raise TimeoutError
                # What is measured meanwhile (a burst on a fresh server) may show it is late.
                # It has paid for its wait already: dropping it takes a clearer miss than
                # not starting it (latency ÷ forecast reached p95 1.57 on the heavy twin).
                self._check_deadline(ticket, params, deadline - loop.time(), _RECHECK_TOLERANCE)
                yield Waiting(self.admission.position(ticket), 0, len(tokens))
            queue_s = time.perf_counter() - arrived
            record.started(queue_s)
            events_ = self._engine_events(tokens, params, deadline, self.cache_scope(key))
            async with aclosing(events_) as events:
                async for delta in events:
                    if isinstance(delta, Waiting):
                        yield delta
                        continue
                    if ttft_s is None:
                        ttft_s = time.perf_counter() - arrived
                        record.first_token(ttft_s)
                    parts.append(delta.text)
                    logprobs.extend(delta.logprobs)
                    n_out, cached = delta.completion_tokens, delta.cached_tokens
                    if delta.finish_reason is not None:
                        finish = delta.finish_reason
                        finished = True
                        if self.token_limits is not None and n_out:
                            # Counted before the last delta goes out: the key's next request
                            # already sees these tokens spent.
                            await asyncio.to_thread(self.token_limits.count_tokens, key, n_out)
                    yield delta
        except DeadlineUnmeetable as exc:
            if forecast_s is not None:  # admitted, then found late while queued: a broken promise
                log.warning(
                    "request %s refused after %.1f s queued (forecast %.0f s at admission): %s",
                    record.request_id,
                    time.perf_counter() - arrived,
                    forecast_s,
                    exc.message,
                )
            raise  # counted where it was raised
        except ServerBusy as exc:  # drained while queued
            self._refuse(exc, exc.reason)
        except TimeoutError:
            log.warning(
                "request %s ended: timeout after %.1f s (%d tokens generated)",
                record.request_id,
                limit_s,
                n_out,
            )
            raise RequestTimeout(f"request exceeded the {limit_s:g} s time limit") from None
        except EngineOverloaded as exc:
            log.warning("request %s ended: %s", record.request_id, exc)
            busy = ServerBusy(
                f"{exc}; retry later", self.admission.retry_after_s(), reason="kv_full"
            )
            self._refuse(busy, "kv_full")
        except EngineError as exc:
            log.error("request %s ended: engine error: %s", record.request_id, exc)
            raise GenerationFailed(str(exc)) from None
        finally:
            self.admission.leave(ticket)
            if record.queue_ms is not None:  # it reached the engine
                total_s = time.perf_counter() - arrived
                record.generated(n_out, cached, decode_rate(n_out, total_s, ttft_s))
            self._observe(record, queue_s, ttft_s, n_out)
            if self.token_limits is not None and n_out and not finished:
                # Ended early (cancelled, timed out, failed): counted without waiting, since
                # this may run while the request is being cancelled.
                loop.run_in_executor(None, self.token_limits.count_tokens, key, n_out)
        total_s = time.perf_counter() - arrived
        forecast.finished(
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            completion_tokens=n_out,
            max_tokens=params.max_tokens,
            first_token_s=(ttft_s or total_s) - queue_s,
            held_s=total_s - queue_s,
        )
        if self.metrics is not None:
            self.metrics.finished_in_time.inc()
            if record.forecast_ms:
                self.metrics.forecast_ratio.observe(total_s * 1000 / record.forecast_ms)
        result = Completion(
            text="".join(parts),
            logprobs=tuple(logprobs),
            finish_reason=finish,
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            completion_tokens=n_out,
            queue_s=queue_s,
            ttft_s=ttft_s,
            total_s=total_s,
        )
        record.end(finish)
        yield result

    async def _engine_events(
        self, tokens: list[int], params: SamplingParams, deadline: float, scope: str
    ) -> AsyncGenerator[Delta | Waiting, None]:
        """The engine's deltas; until the first token, a ``Waiting`` with the prompt progress
        whenever ``keepalive_s`` passes with nothing sent (a prompt step may take longer).
        Raises TimeoutError at ``deadline`` (event-loop time)."""
        loop = asyncio.get_running_loop()
        prompt_done = 0
        started = False
        pending: asyncio.Future[Delta] | None = None
        async with aclosing(self.engine.generate(tokens, params, scope=scope)) as deltas:
            try:
                sent = loop.time()
                while True:
                    if pending is None:
                        pending = asyncio.ensure_future(anext(deltas))
                    wait_s = deadline - loop.time()
                    if not started:
                        wait_s = min(wait_s, sent + self.keepalive_s - loop.time())
                    await asyncio.wait({pending}, timeout=max(0.0, wait_s))
                    if not pending.done():
                        if loop.time() >= deadline:
                            raise TimeoutError
                        sent = loop.time()
                        yield Waiting(0, prompt_done, len(tokens))
                        continue
                    try:
                        delta = pending.result()
                    except StopAsyncIteration:
                        return
                    pending = None
                    if delta.is_progress:
                        prompt_done = delta.prompt_done
                        if loop.time() - sent >= self.keepalive_s:
                            sent = loop.time()
                            yield Waiting(0, prompt_done, len(tokens))
                        continue
                    started = True
                    yield delta
            finally:
                # Cancelled mid-wait (client gone, timeout): stop the engine's generator
                # first, so closing it frees the sequence.
                if pending is not None and not pending.done():
                    pending.cancel()
                    with suppress(asyncio.CancelledError):
                        await pending

    async def complete(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        record: RequestRecord,
        timeout_s: float | None = None,
    ) -> Completion:
        stream = self.stream(prompt, params, record=record, timeout_s=timeout_s)
        async with aclosing(stream) as events:
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
