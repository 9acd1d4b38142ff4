"""uvicorn's HTTP protocol with the bounds it lacks on a request's headers, before any ASGI layer
(and so before authentication) sees the request:

- Time: uvicorn times out an idle kept-alive connection, but once a client has sent its first
  byte it waits for the rest of the headers forever, so a few hundred connections that each
  send one header line a minute (slowloris) hold the process's sockets. Here every request's
  headers must arrive within ``GPTAPI_HEADER_TIMEOUT_S`` of its first byte (or of the connection
  opening); later, the connection is closed without an answer.
- Size and count: httptools buffers a header until it ends, with no limit (a 64 MB header took
  10.6 s and ~110 MB, and stalled /health for 3.5 s; a 1 MB one was served). Here the bytes of
  an unfinished head are counted as they arrive, and every complete header line too: past
  ``GPTAPI_MAX_HEADER_BYTES`` or ``GPTAPI_MAX_HEADERS`` the answer is 431 in the one JSON error
  shape, and the connection is closed, after at most one read's worth of excess.
- WebSocket: not served at all (``ws="none"``): an upgrade request is answered as the plain
  HTTP request it also is, by the app (401 without a key, 404 with one). Before, uvicorn's
  WebSocket stack refused it with a 403 and logged its query string, key included.

The body has its own limits (``edge.body``).
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from gptapi.config import Settings
from gptapi.errors import HeadersTooLarge, error_body, status_for

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is an optional uvicorn extra
    _Base = H11Protocol  # type: ignore[assignment,misc]


class BoundedHeadersProtocol(_Base):
    # Per process, from its settings (``configure``): uvicorn's workers get the class by name.
    header_timeout_s = 10.0
    max_header_bytes = 32 * 2**10
    max_headers = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        # True while a request's head is awaited or arriving: from the connection's opening,
        # and from a request's first byte (the parser's on_message_begin) to its last header
        # line (on_headers_complete), whatever the previous response on the connection is
        # doing. Body bytes (a body left unread after an early 401, say) never count.
        self._in_head = False
        self._head_bytes = 0
        self._header_lines = 0
        self._header_line_bytes = 0
        self._refused: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_head()

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return  # answered 431 and closing: read nothing more
        super().data_received(data)
        if self._in_head and self._refused is None:
            # The head is still unfinished after this read, so the read was head bytes (all of
            # it is counted, the tail of a pipelined body before the head included: one read).
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(f"request headers exceed {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begin_head()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += 1
        self._header_line_bytes += len(name) + len(value) + 4
        if self._header_line_bytes > self.max_header_bytes:
            self._refused = f"request headers exceed {self.max_header_bytes} bytes"
        elif self._header_lines > self.max_headers:
            self._refused = f"more than {self.max_headers} request headers"
        if self._refused is not None:
            # Stops the parser: uvicorn answers a parser error with send_400_response.
            raise ValueError(self._refused)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refused is None:
            super().send_400_response(msg)
            return
        self._send_431(self._refused)

    def _unsupported_upgrade_warning(self) -> None:
        """An upgrade (WebSocket) request is answered by the app as plain HTTP, and logged in
        requests.jsonl like any other request: nothing to warn about."""

    def _refuse(self, message: str) -> None:
        self._refused = message
        self._send_431(message)

    def _send_431(self, message: str) -> None:
        self._disarm()
        error = HeadersTooLarge(message)
        status, type_ = status_for(error)
        body = json.dumps(
            error_body(type_=type_, message=message, code=error.code, request_id=uuid.uuid4().hex)
        ).encode()
        head = (
            f"HTTP/1.1 {status} Request Header Fields Too Large\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(head.encode() + body)
        # else: the head came pipelined behind a response still being sent; an answer now would
        # land inside that response, so the connection is only closed.
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _begin_head(self) -> None:
        """A request's head is awaited (a new connection) or begins (its first byte): its byte
        budget starts over, and its time budget runs from here unless it already does."""
        self._in_head = True
        self._head_bytes = self._header_lines = self._header_line_bytes = 0
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()


def configure(settings: Settings) -> None:
    """Per process: uvicorn's worker processes get the class by name (it must pickle), so each
    sets its bounds from its own settings (``serve.create_app_from_env``)."""
    BoundedHeadersProtocol.header_timeout_s = settings.header_timeout_s
    BoundedHeadersProtocol.max_header_bytes = settings.max_header_bytes
    BoundedHeadersProtocol.max_headers = settings.max_headers


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The transport settings every way of serving shares (one process or several)."""
    configure(settings)
    trusted = settings.forwarded_allow_ips.strip()
    # Trust X-Forwarded-For only from the configured proxies: anyone else could spoof their
    # address and dodge the per-IP limit.
    proxy: dict[str, Any] = (
        {"proxy_headers": True, "forwarded_allow_ips": trusted}
        if trusted
        else {"proxy_headers": False}
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        **proxy,
        "http": BoundedHeadersProtocol,
        "ws": "none",
        "timeout_keep_alive": settings.keepalive_timeout_s,
        "limit_concurrency": settings.limit_concurrency,
        # uvicorn's access log prints query strings, where a careless client may put its key;
        # requests.jsonl has every request, by path and key id only.
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace_s),
    }
