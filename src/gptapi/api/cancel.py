"""Cancellation on client disconnect: a request whose client is gone stops generating."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any, TypeVar

from fastapi import Request

from gptapi.errors import ClientDisconnected

log = logging.getLogger("gptapi.api")
T = TypeVar("T")


async def _wait_for_disconnect(request: Request) -> None:
    # The body has been read, so the next ASGI message is the disconnect, whenever it comes.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher
    if task.cancelled():
        log.info("request %s ended: client disconnected", request.state.request_id)
        raise ClientDisconnected("client disconnected")
    return task.result()
