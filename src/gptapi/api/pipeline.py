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
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Message, Send

from gptapi.api.cancel import cancel_on_disconnect
from gptapi.api.sse import error_event, first_event, keepalive, sse_event
from gptapi.config import Settings
from gptapi.engine import Delta, SamplingParams
from gptapi.errors import GptapiError, InputTooLarge, InvalidRequest
from gptapi.gateway import Completion, Gateway, Waiting
from gptapi.prompts import TaskPrompt
from gptapi.telemetry.requestlog import RequestRecord

log = logging.getLogger("gptapi.api")
_WRITE_GRACE_S = 5.0


@dataclass(frozen=True)
class Sampling:
    """Sampling as a body asked for it; each API fills in its own defaults (OpenAI's on /v1)."""

    max_tokens: int | None
    temperature: float
    top_p: float
    top_k: int
    seed: int | None


@dataclass(frozen=True)
class GenerationJob:
    task: str  # the request log's and metrics' name for it
    prompt: TaskPrompt
    params: SamplingParams
    stream: bool
    include_usage: bool = False  # /v1 streams: a last chunk with the token usage


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
        max_tokens=sampling.max_tokens
        or min(settings.default_max_tokens, settings.max_tokens_limit),
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        stop=tuple(stop) + built.stop,
        seed=sampling.seed,
        skip_leading_whitespace=built.skip_leading_whitespace,
    )
    return GenerationJob(task, built, params, stream, include_usage)


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

    def final(self, result: Completion) -> BaseModel:
        """The whole response of a request that did not stream."""
        ...

    def opening(self) -> list[dict[str, Any]]:
        """Chunks a stream starts with, before any text."""
        ...

    def text(self, text: str) -> dict[str, Any]: ...

    def closing(self, result: Completion, include_usage: bool) -> list[dict[str, Any]]:
        """The chunks after the last text (finish reason, usage), before ``[DONE]``."""
        ...


Events = AsyncGenerator[Delta | Waiting | Completion, None]


async def run(
    request: Request, gateway: Gateway, settings: Settings, job: GenerationJob, shape: Shape
) -> BaseModel | StreamingResponse:
    record: RequestRecord = request.state.record
    record.task = job.task
    if job.stream:
        loop = asyncio.get_running_loop()
        # A little after the request's own deadline, so its timeout error event still goes out.
        deadline = loop.time() + settings.request_timeout_s + _WRITE_GRACE_S
        events = gateway.stream(job.prompt.parts, job.params, record=record)
        # Refusals (busy, key cap, too long, token budget) happen before the first event, so
        # they are still proper HTTP errors rather than errors inside a 200 stream.
        first = await cancel_on_disconnect(request, first_event(events))
        return DeadlineStreamingResponse(
            _sse(first, events, record, shape, job.include_usage, settings.log_text),
            deadline=deadline,
            record=record,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await cancel_on_disconnect(
        request, gateway.complete(job.prompt.parts, job.params, record=record)
    )
    if settings.log_text:
        record.text = {"prompt": job.prompt.text, "output": result.text}
    return shape.final(result)


async def _sse(
    first: Delta | Waiting | Completion,
    events: Events,
    record: RequestRecord,
    shape: Shape,
    include_usage: bool,
    log_text: bool,
) -> AsyncIterator[bytes]:
    # Starlette cancels this generator when the client goes away; closing `events` then
    # cancels the sequence, which frees its slot at the next decode step.
    try:
        for chunk in shape.opening():
            yield sse_event(chunk)
        event = first
        while not isinstance(event, Completion):
            if isinstance(event, Waiting):
                yield keepalive(event)
            elif event.text:
                yield sse_event(shape.text(event.text))
            event = await anext(events)
        if log_text:
            record.text = {"output": event.text}
        for chunk in shape.closing(event, include_usage):
            yield sse_event(chunk)
        yield b"data: [DONE]\n\n"
    except GptapiError as exc:
        yield error_event(record, exc)
    finally:
        await events.aclose()


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
