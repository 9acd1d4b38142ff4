"""Server-Sent Events helpers shared by the task endpoints and the /v1 API."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from gptapi.errors import GptapiError, error_body, status_for
from gptapi.gateway import Waiting
from gptapi.telemetry.requestlog import RequestRecord

T = TypeVar("T")


def sse_event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def first_event(events: AsyncGenerator[T, None]) -> T:
    """Run up to the first event (it comes as soon as the request is admitted, queued or not),
    closing the events if that fails."""
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()
        raise


def keepalive(waiting: Waiting) -> bytes:
    """An SSE comment (ignored by SSE clients) for a stream with no token yet: sent when the
    request is admitted, then every GPTAPI_STREAM_KEEPALIVE_S."""
    if waiting.queue_position > 0:
        return f": queued position={waiting.queue_position}\n\n".encode()
    return f": prompt {waiting.prompt_done}/{waiting.prompt_tokens}\n\n".encode()


def error_event(record: RequestRecord, exc: GptapiError) -> bytes:
    """A failure after the 200 went out: the last event of the stream, in the one error shape,
    typed as the same error would be in a JSON response (a timeout is a timeout_error)."""
    record.end(exc.code)
    _, type_ = status_for(exc)
    return sse_event(
        error_body(type_=type_, message=exc.message, code=exc.code, request_id=record.request_id)
    )
