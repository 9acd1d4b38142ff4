"""uvicorn's HTTP protocol with one more bound: the time to send a request's headers.

uvicorn times out an idle kept-alive connection, but once a client has sent its first byte it
waits for the rest of the headers forever, so a few hundred connections that each send one
header line a minute (slowloris) hold the process's sockets. Here every request's headers must
arrive within ``GPTAPI_HEADER_TIMEOUT_S`` of its first byte (or of the connection opening);
later, the connection is closed without an answer. The body has its own limit (``Guards``).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from gptapi.config import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is an optional uvicorn extra
    _Base = H11Protocol  # type: ignore[assignment,misc]


class HeaderTimeoutProtocol(_Base):
    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_cycle: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._between_requests():
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._waiting_cycle:
            self._disarm()  # its headers are complete: a new request cycle began

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _arm(self) -> None:
        self._waiting_cycle = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.cycle is self._waiting_cycle and not self.transport.is_closing():
            self.transport.close()


def set_header_timeout(seconds: float) -> None:
    """Per process: uvicorn's worker processes get the class by name (it must pickle), so each
    sets its bound from its own settings (``app.create_app_from_env``)."""
    HeaderTimeoutProtocol.header_timeout_s = seconds


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The transport settings every way of serving shares (one process or several)."""
    set_header_timeout(settings.header_timeout_s)
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
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": settings.keepalive_timeout_s,
        "limit_concurrency": settings.limit_concurrency,
        # uvicorn's access log prints query strings, where a careless client may put its key;
        # requests.jsonl has every request, by path and key id only.
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace_s),
    }
