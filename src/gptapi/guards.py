"""ASGI guards that run before routing: the request body's media type, size and read deadline
(``Guards``), and security headers on every response (``SecurityHeaders``).

The body is read here, bounded in bytes and time, then replayed to the app: a 10 MB upload is
refused after its first 256 KiB, and a client dribbling bytes cannot hold a request open for
longer than ``body_timeout_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptapi.config import Settings
from gptapi.errors import (
    BodyTimeout,
    BodyTooLarge,
    GptapiError,
    UnsupportedMediaType,
    render_error,
)

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# JSON and event streams never need scripts, styles or frames; the docs pages load theirs from
# a CDN, so they keep the browser defaults.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_LINGER_S = 2.0
_LINGER_MAX_BYTES = 64 * 2**20


class Guards:
    def __init__(
        self, app: ASGIApp, settings: Settings, keyed: Callable[[], frozenset[str]]
    ) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        self.body_timeout_s = settings.body_timeout_s
        self.keyed = keyed  # routes that take a key take JSON bodies only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _BODY_METHODS:
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
        if scope["path"] in self.keyed() and not _is_json(scope):
            raise UnsupportedMediaType(
                "send the body as JSON with 'Content-Type: application/json'"
            )
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


def _is_json(scope: Scope) -> bool:
    media = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: waits for the disconnect, as the app expects

    return replayed


class SecurityHeaders:
    """On every response, refusals by the outer guards included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = _with_security_headers(send, scope["path"])
        await self.app(scope, receive, send)


def _with_security_headers(send: Send, path: str) -> Send:
    extra = list(_SECURITY_HEADERS)
    if path not in _DOCS_PATHS:
        extra.append(_API_CSP)

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            headers += [(k, v) for k, v in extra if k not in present]
            if b"cache-control" not in present:
                headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
        await send(message)

    return sending
