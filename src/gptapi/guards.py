"""ASGI guards that run before routing: the request body's size and read deadline, the per-IP
limit on routes without a key, and security headers on every response.

The body is read here, bounded in bytes and time, then replayed to the app: a 10 MB upload is
refused after its first 256 KiB, and a client dribbling bytes cannot hold a request open for
longer than ``body_timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptapi.config import Settings
from gptapi.errors import RateLimited, error_body
from gptapi.requestlog import RequestRecord

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
    def __init__(self, app: ASGIApp, settings: Settings, keyed_paths: frozenset[str]) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        self.body_timeout_s = settings.body_timeout_s
        # Routes that authenticate: their limits are per key, counted after authentication.
        self.keyed_paths = keyed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send, scope["path"])
        state = scope.setdefault("state", {})
        if scope["path"] not in self.keyed_paths:
            limits = scope["app"].state.rate_limits
            try:
                if limits.remote:
                    await asyncio.to_thread(limits.hit_ip, client_ip(scope))
                else:
                    limits.hit_ip(client_ip(scope))
            except RateLimited as exc:
                await _error(send, state, 429, "rate_limit_error", exc.message, exc.code,
                             exc.headers)  # fmt: skip
                return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.keyed_paths and not _is_json(scope):
            await _error(send, state, 415, "invalid_request_error",
                         "send the body as JSON with 'Content-Type: application/json'",
                         "unsupported_media_type")  # fmt: skip
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            if _header(scope, b"expect") != b"100-continue":
                await _discard_rest(receive)  # the client is sending it anyway
            await self._too_large(send, state, declared)
            return
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body, complete = await self._read_body(receive)
        except TimeoutError:
            message = f"request body not received within {self.body_timeout_s:g} s"
            await _error(send, state, 408, "invalid_request_error", message, "body_timeout")
            return
        if not complete:
            return  # the client left while sending: nobody to answer
        if body is None:
            await _discard_rest(receive)
            await self._too_large(send, state, None)
            return
        await self.app(scope, _replay(body, receive), send)

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

    async def _too_large(self, send: Send, state: dict[str, object], declared: int | None) -> None:
        size = "" if declared is None else f" ({declared} bytes)"
        message = f"request body{size} is larger than the {self.max_body}-byte limit"
        await _error(send, state, 413, "invalid_request_error", message, "request_too_large",
                     {"Connection": "close"})  # fmt: skip


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


def client_ip(scope: Scope) -> str:
    # uvicorn has already replaced the peer with X-Forwarded-For's client when the proxy is
    # trusted (GPTAPI_FORWARDED_ALLOW_IPS); otherwise this is the socket's peer.
    client = scope.get("client")
    return client[0] if client else "unknown"


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


async def _error(
    send: Send,
    state: dict[str, object],
    status: int,
    type_: str,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> None:
    record = state.get("record")
    if isinstance(record, RequestRecord) and record.end_reason is None:
        record.end_reason = code
    request_id = state.get("request_id")
    body = json.dumps(
        error_body(
            type_=type_,
            message=message,
            code=code,
            request_id=request_id if isinstance(request_id, str) else None,
        )
    ).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
