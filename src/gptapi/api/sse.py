"""Server-Sent Events helpers shared by the task endpoints and the /v1 API."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

T = TypeVar("T")


def sse_event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def first_event(events: AsyncGenerator[T, None]) -> T:
    """Run up to the first event before answering, so refusals (busy, timeout in the queue)
    are still proper HTTP errors rather than errors inside a 200 stream."""
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()
        raise
