"""The one generation runner behind every API.

An API turns its body into a ``GenerationJob`` with ``make_job`` (every limit that depends on
the configuration checked there, once, before any work), then hands it to ``run`` with a
``Shape``: how its responses look. ``run`` does the rest the same way for all of them: complete
or stream, cancellation when the client leaves, keepalives while queued, errors inside a stream,
text logging, and the request deadline while writing to a client that stopped reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Message, Send

from gptapi.api.cancel import cancel_on_disconnect
from gptapi.api.sse import error_event, first_event, keepalive, sse_event
from gptapi.config import Settings
from gptapi.engine import Delta, SamplingParams, TokenLogprob
from gptapi.errors import GptapiError, InputTooLarge, InvalidRequest
from gptapi.gateway import Completion, Gateway, Waiting
from gptapi.prompts import TaskPrompt
from gptapi.telemetry.requestlog import RequestRecord

log = logging.getLogger("gptapi.api")
T = TypeVar("T")
_WRITE_GRACE_S = 5.0
# The client's own time limit in seconds, when shorter than GPTAPI_REQUEST_TIMEOUT_S: the
# deadline forecast refuses at once what would finish later, and the request ends there.
TIMEOUT_HEADER = "X-Request-Timeout"


def requested_timeout(request: Request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):  # NaN fails this too
        raise InvalidRequest(f"{TIMEOUT_HEADER}: expected a positive number of seconds")
    return seconds


@dataclass(frozen=True)
class Sampling:
    """Sampling as a body asked for it; each API fills in its own defaults (OpenAI's on /v1)."""

    max_tokens: int | None
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    grammar: str | None = None  # structured output, tool calls
    grammar_trigger: str | None = None  # lazy: the grammar applies after this text
    logprobs: int | None = None  # None: off; k: each token's logprob and k alternatives


@dataclass(frozen=True)
class GenerationJob:
    task: str  # the request log's and metrics' name for it
    prompt: TaskPrompt
    params: SamplingParams
    stream: bool
    include_usage: bool = False  # /v1 streams: a last chunk with the token usage
    n: int = 1  # choices: n sequences of one prompt, each a request for slots and limits


def make_job(
    settings: Settings,
    *,
    task: str,
    texts: dict[str, str | None],
    prompt: Callable[[], TaskPrompt],
    sampling: Sampling,
    stop: list[str],
    stream: bool,
    include_usage: bool = False,
    n: int = 1,
) -> GenerationJob:
    """Check what the request asks for against this server's limits, then build its prompt
    (``prompt`` runs last: rendering a template is the only costly step)."""
    _check_text_size(settings, texts)
    _check_stop_strings(settings, stop)
    if sampling.max_tokens is not None and sampling.max_tokens > settings.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens: {sampling.max_tokens} is above this server's limit of "
            f"{settings.max_tokens_limit}"
        )
    built = prompt()
    params = SamplingParams(
        **{
            **asdict(sampling),
            "max_tokens": sampling.max_tokens
            or min(settings.default_max_tokens, settings.max_tokens_limit),
            # Structured output ends where the grammar's value ends: a stop string (the client's,
            # or a base model's "\n") would cut the JSON it promises. With a lazy grammar (tool
            # calls) the text before the calls ends at stop strings like any text; the engine
            # stops looking for them once the grammar applies.
            "stop": tuple(stop) + built.stop
            if sampling.grammar is None or sampling.grammar_trigger is not None
            else (),
            "skip_leading_whitespace": built.skip_leading_whitespace,
            "streamed": stream,
        }
    )
    return GenerationJob(task, built, params, stream, include_usage, n)


def _check_text_size(settings: Settings, texts: dict[str, str | None]) -> None:
    """One bound on the text a request puts into its prompt: all fields (all chat messages)
    together, before anything is rendered or tokenized."""
    sizes = {name: len(value) for name, value in texts.items() if value is not None}
    total = sum(sizes.values())
    if total > settings.max_prompt_chars:
        what = next(iter(sizes)) if len(sizes) == 1 else f"{', '.join(sizes)} together"
        raise InputTooLarge(
            f"{what} has {total} characters; the limit is {settings.max_prompt_chars}"
        )


def _check_stop_strings(settings: Settings, stop: list[str]) -> None:
    if len(stop) > settings.max_stop_strings:
        raise InvalidRequest(
            f"stop: {len(stop)} strings; this server allows {settings.max_stop_strings}"
        )
    for s in stop:
        if len(s) > settings.max_stop_chars:
            raise InvalidRequest(
                f"stop: a string of {len(s)} characters; the limit is {settings.max_stop_chars}"
            )


class Shape(Protocol):
    """How one API's responses look; nothing else differs between the APIs."""

    def final(self, results: list[Completion]) -> BaseModel:
        """The whole response of a request that did not stream (one result per choice)."""
        ...

    def opening(self, n: int) -> list[dict[str, Any]]:
        """Chunks a stream starts with, before any text."""
        ...

    def text(
        self, text: str, index: int, logprobs: tuple[TokenLogprob, ...]
    ) -> list[dict[str, Any]]:
        """The chunks of released text (one may be empty when it only carries logprobs; none
        while text is held, e.g. what may start a tool call)."""
        ...

    def closing(self, results: list[Completion], include_usage: bool) -> list[dict[str, Any]]:
        """The chunks after the last text (finish reasons, usage), before ``[DONE]``."""
        ...


Events = AsyncGenerator[Delta | Waiting | Completion, None]


async def run(
    request: Request, gateway: Gateway, settings: Settings, job: GenerationJob, shape: Shape
) -> BaseModel | StreamingResponse:
    record: RequestRecord = request.state.record
    record.task = job.task
    timeout_s = requested_timeout(request)
    # Choice i: its own sequence, record and (with a seed) seed + i, so n choices at a
    # temperature differ and are reproducible. Started together, they share the prompt's KV
    # (concurrent prefix sharing): the prompt is computed once.
    records = [record, *(record.child(i) for i in range(1, job.n))]
    params = [
        job.params if i == 0 or job.params.seed is None
        else replace(job.params, seed=(job.params.seed + i) % (2**32 - 1))  # 2**32-1: random
        for i in range(job.n)
    ]  # fmt: skip
    if job.stream:
        loop = asyncio.get_running_loop()
        # A little after the request's own deadline, so its timeout error event still goes out.
        deadline = loop.time() + settings.request_timeout_s + _WRITE_GRACE_S
        streams = [
            gateway.stream(job.prompt.parts, p, record=r, timeout_s=timeout_s)
            for p, r in zip(params, records, strict=True)
        ]
        # Refusals (busy, key cap, too long, token budget) happen before the first event, so
        # they are still proper HTTP errors rather than errors inside a 200 stream.
        try:
            firsts = await cancel_on_disconnect(request, _all(first_event(e) for e in streams))
        except BaseException:
            await asyncio.gather(*(e.aclose() for e in streams), return_exceptions=True)
            raise
        return DeadlineStreamingResponse(
            _sse(firsts, streams, records, shape, job.include_usage, settings.log_text),
            deadline=deadline,
            record=record,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    results = await cancel_on_disconnect(
        request,
        _all(
            gateway.complete(job.prompt.parts, p, record=r, timeout_s=timeout_s)
            for p, r in zip(params, records, strict=True)
        ),
    )
    _account(records, results)
    if settings.log_text:
        record.text = {"prompt": job.prompt.text, "output": results[0].text}
    return shape.final(results)


async def _all(work: Iterable[Awaitable[T]]) -> list[T]:
    """Every result, or the first failure with the rest cancelled (one choice refused or
    failed fails the request: it was admitted as n requests, it ends as one)."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _account(records: list[RequestRecord], results: list[Completion]) -> None:
    """The request's log line counts every choice's generated tokens."""
    if len(results) > 1:
        records[0].completion_tokens = sum(r.completion_tokens for r in results)


async def _sse(
    firsts: list[Delta | Waiting | Completion],
    streams: list[Events],
    records: list[RequestRecord],
    shape: Shape,
    include_usage: bool,
    log_text: bool,
) -> AsyncIterator[bytes]:
    """Every choice's events as they come, each text chunk tagged with its choice's index."""
    # Starlette cancels this generator when the client goes away; closing the streams then
    # cancels the sequences, which frees their slots at the next decode step.
    results: list[Completion | None] = [None] * len(streams)
    nexts: dict[asyncio.Future[Delta | Waiting | Completion], int] = {}
    try:
        for chunk in shape.opening(len(streams)):
            yield sse_event(chunk)
        arrived = list(enumerate(firsts))
        while arrived:
            for index, event in arrived:
                if isinstance(event, Completion):
                    results[index] = event
                    continue
                if isinstance(event, Waiting):
                    if index == 0:  # one keepalive line for the request, not one per choice
                        yield keepalive(event)
                elif event.text or event.logprobs:
                    for chunk in shape.text(event.text, index, event.logprobs):
                        yield sse_event(chunk)
                nexts[asyncio.ensure_future(anext(streams[index]))] = index
            arrived = []
            if nexts:
                done, _ = await asyncio.wait(nexts, return_when=asyncio.FIRST_COMPLETED)
                arrived = [(nexts.pop(task), task.result()) for task in done]
        finished = [r for r in results if r is not None]
        _account(records, finished)
        if log_text:
            records[0].text = {"output": finished[0].text}
        for chunk in shape.closing(finished, include_usage):
            yield sse_event(chunk)
        yield b"data: [DONE]\n\n"
    except GptapiError as exc:
        yield error_event(records[0], exc)
    finally:
        for task in nexts:
            task.cancel()
        await asyncio.gather(*nexts, return_exceptions=True)
        await asyncio.gather(*(e.aclose() for e in streams), return_exceptions=True)


class DeadlineStreamingResponse(StreamingResponse):
    """A stream whose writes end at the request deadline: a client that stops reading (its
    socket buffers full, every write waiting) loses its connection and frees its slot then,
    instead of holding it for as long as it likes."""

    def __init__(
        self, content: AsyncIterator[bytes], *, deadline: float, record: RequestRecord, **kw: Any
    ) -> None:
        super().__init__(content, **kw)
        self.deadline = deadline
        self.record = record

    async def stream_response(self, send: Send) -> None:
        stalled = False

        async def bounded(message: Message) -> None:
            nonlocal stalled
            async with asyncio.timeout_at(self.deadline) as write:
                try:
                    await send(message)
                finally:
                    stalled = write.expired()

        try:
            await super().stream_response(bounded)
        except TimeoutError:
            if not stalled:
                raise
            self.record.end("client_stalled")
            log.warning(
                "request %s ended: the client stopped reading; stream closed at the deadline",
                self.record.request_id,
            )
            iterator = self.body_iterator
            if hasattr(iterator, "aclose"):
                await iterator.aclose()
