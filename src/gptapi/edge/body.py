"""Body rules, before routing: every request body is UTF-8 JSON, bounded in bytes and in time.

The body is read here, then replayed to the app: a 10 MB upload is refused after its first
256 KiB, a client dribbling bytes cannot hold a request open for longer than ``body_timeout_s``,
and a body in another encoding (UTF-16/32, which Python's JSON parser would otherwise detect and
accept, or a ``charset`` other than UTF-8) is a 400 before anything parses it.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptapi.config import Settings
from gptapi.edge.responses import render_error
from gptapi.errors import (
    BodyTimeout,
    BodyTooLarge,
    GptapiError,
    NotJson,
    UnsupportedMediaType,
)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_LINGER_S = 2.0
_LINGER_MAX_BYTES = 64 * 2**20


class BodyRules:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        self.body_timeout_s = settings.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _BODY_METHODS or "key_id" not in scope.get("state", {}):
            # No body to read, or a request without a key (an open path: none takes a body; the
            # route refuses it unread, as a 401 does): nobody makes the server wait for bytes
            # before showing a key.
            await self.app(scope, receive, send)
            return
        try:
            body = await self._checked_body(scope, receive)
        except GptapiError as exc:
            await render_error(scope, receive, send, exc)
            return
        if body is None:
            return  # the client left while sending: nobody to answer
        await self.app(scope, _replay(body, receive), send)

    async def _checked_body(self, scope: Scope, receive: Receive) -> bytes | None:
        _check_media_type(scope)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            if _header(scope, b"expect") != b"100-continue":
                await _discard_rest(receive)  # the client is sending it anyway
            raise self._too_large(declared)
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body, complete = await self._read_body(receive)
        except TimeoutError:
            raise BodyTimeout(
                f"request body not received within {self.body_timeout_s:g} s"
            ) from None
        if not complete:
            return None
        if body is None:
            await _discard_rest(receive)
            raise self._too_large(None)
        _check_utf8(body)
        return body

    async def _read_body(self, receive: Receive) -> tuple[bytes | None, bool]:
        """The whole body, or None once it passes the limit; False when the client left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None, True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    def _too_large(self, declared: int | None) -> BodyTooLarge:
        size = "" if declared is None else f" ({declared} bytes)"
        return BodyTooLarge(f"request body{size} is larger than the {self.max_body}-byte limit")


async def _discard_rest(receive: Receive) -> None:
    """Read and drop what the client is still uploading, for a short while, before answering.
    Closing on unread data makes the kernel reset the connection, and most clients then lose
    the answer; this is nginx's "lingering close", bounded in time and bytes."""
    seen = 0
    with suppress(TimeoutError):
        async with asyncio.timeout(_LINGER_S):
            while seen < _LINGER_MAX_BYTES:
                message = await receive()
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return
                seen += len(message.get("body", b""))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else None


def _check_media_type(scope: Scope) -> None:
    media, *params = (_header(scope, b"content-type") or b"").lower().split(b";")
    media = media.strip()
    if not (media == b"application/json" or media.endswith(b"+json")):
        raise UnsupportedMediaType("send the body as JSON with 'Content-Type: application/json'")
    for param in params:
        name, _, value = param.partition(b"=")
        charset = value.strip().strip(b'"')
        if name.strip() == b"charset" and charset not in (b"utf-8", b"utf8"):
            raise NotJson(
                f"request bodies are UTF-8 JSON; charset {charset.decode('latin-1')!r} is not"
            )


def _check_utf8(body: bytes) -> None:
    """JSON text is UTF-8 (RFC 8259). A NUL byte never occurs in it (control characters are
    escaped in strings), but UTF-16/32 text of ASCII is full of them and also decodes as UTF-8."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotJson("request body is not UTF-8: send JSON encoded as UTF-8") from None
    if b"\x00" in body:
        raise NotJson(
            "request body is not UTF-8 JSON (NUL bytes: UTF-16 or UTF-32?): send it as UTF-8"
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: waits for the disconnect, as the app expects

    return replayed
