"""Per-request context: an id (also a response header), a record filled in along the way, the
memory snapshots of an authenticated request (at authentication and at the end), and — once the
response is sent — one JSON line in the request log plus the request metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptapi.edge.responses import error_response
from gptapi.errors import InternalError
from gptapi.telemetry.memory import MemorySnapshot, delta, snapshot
from gptapi.telemetry.recent import RecentRequests
from gptapi.telemetry.requestlog import RequestRecord

errors_log = logging.getLogger("gptapi.errors")

REQUEST_ID_HEADER = "x-request-id"
# Probes, scrapes and the monitor page's polls arrive every few seconds; log them only when
# they fail (the polls would also push the requests they watch out of the monitor's ring).
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics", "/monitor/stats", "/monitor/requests"})


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        record = RequestRecord(request_id=request_id, route=scope["path"], method=scope["method"])
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["record"] = record
        app_state = scope["app"].state
        started_at = time.time()
        started = time.perf_counter()
        quiet = scope["path"] in _QUIET_PATHS
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                # Set by the rate-limit dependency once the key was counted.
                limits: dict[str, str] = state.get("rate_limit_headers") or {}
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                    *((k.lower().encode(), v.encode()) for k, v in limits.items()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # A bug, not a refusal. Answered here, inside this middleware, so the 500 carries
            # the request id header and gets its log line like any other response.
            errors_log.exception("unhandled error in request %s", request_id)
            if started_response:
                raise  # mid-stream: nothing left to do but drop the connection
            response = error_response(InternalError(), state, scope["path"])
            await response(scope, receive, send_with_id)
        finally:
            total_s = time.perf_counter() - started
            metrics = getattr(app_state, "metrics", None)
            route = self._route_label(scope, app_state)
            if metrics is not None:
                metrics.requests.labels(route, str(status)).inc()
                metrics.request_seconds.labels(route).observe(total_s)
            log = getattr(app_state, "request_log", None)
            if log is not None and not (quiet and status < 400):
                # Set when the key was counted (edge.ratelimit.RateLimit): the cheap fields, PSS
                # and USS as of the memory sampler's last reading (a fresh one walks every page
                # table). Requests refused before that cost no snapshot.
                mem_start: MemorySnapshot | None = state.get("memory_start")
                mem_end = (
                    None if mem_start is None else await asyncio.to_thread(snapshot, fresh=False)
                )
                entry = _entry(record, status, started_at, total_s, mem_start, mem_end)
                log.write(entry)
                # The same line, for GET /monitor/requests (it keeps no text and no key).
                recent: RecentRequests | None = getattr(app_state, "recent_requests", None)
                if recent is not None:
                    recent.add(entry)

    @staticmethod
    def _route_label(scope: Scope, app_state: Any) -> str:
        # Label by route template, never raw path: unknown paths must not grow the series.
        known: frozenset[str] = getattr(app_state, "route_paths", frozenset())
        return scope["path"] if scope["path"] in known else "other"


def _entry(
    record: RequestRecord,
    status: int,
    started_at: float,
    total_s: float,
    mem_start: MemorySnapshot | None,
    mem_end: MemorySnapshot | None,
) -> dict[str, Any]:
    fields = asdict(record)
    text = fields.pop("text")
    entry: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(started_at, UTC).isoformat(timespec="milliseconds"),
        **fields,
        "status": status,
        "total_ms": round(total_s * 1000, 3),
        "memory_start": None if mem_start is None else mem_start.as_dict(),
        "memory_end": None if mem_end is None else mem_end.as_dict(),
        "memory_delta": None if mem_start is None or mem_end is None else delta(mem_start, mem_end),
    }
    if text:
        entry["text"] = text
    return entry
