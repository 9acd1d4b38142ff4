"""The application factory. Nothing here runs at import time; ``create_app`` wires it all."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gptapi.api import health, metrics, openai, tasks
from gptapi.auth import KeyStore
from gptapi.config import Settings
from gptapi.engine import Engine
from gptapi.errors import install_error_handlers
from gptapi.guards import Guards, SecurityHeaders
from gptapi.limits import EdgeRateLimit, RateLimits, keyed_paths
from gptapi.memlimit import MemoryLimit
from gptapi.memory import snapshot, snapshot_cost_s
from gptapi.metrics import Metrics
from gptapi.middleware import RequestContextMiddleware
from gptapi.pool import InferencePool
from gptapi.requestlog import JsonLinesLog
from gptapi.serve import mark_worker_ready, unmark_worker_ready
from gptapi.transport import set_header_timeout

log = logging.getLogger("gptapi")

EngineFactory = Callable[[Settings], Engine]


def load_llama_engine(settings: Settings) -> Engine:
    from gptapi.engine.llama import load_engine

    return load_engine(settings)


_PSS_REFRESH_S = 10.0


async def _sample_memory(app: FastAPI, memory_log: JsonLinesLog, every_s: float) -> None:
    """memory.jsonl: one snapshot per interval, so RAM can be plotted over a stress test. PSS is
    re-read every 10 s only: smaps_rollup costs ~75 ms with the 4 GB model mapped."""
    last_fresh = -_PSS_REFRESH_S
    while True:
        now = time.monotonic()
        fresh = now - last_fresh >= _PSS_REFRESH_S
        if fresh:
            last_fresh = now
        snap = await asyncio.to_thread(snapshot, fresh=fresh)
        pool: InferencePool | None = app.state.pool
        memory_log.write(
            {
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "busy_slots": None if pool is None else pool.admission.busy,
                "queued": None if pool is None else pool.admission.queued,
                **snap.as_dict(),
            }
        )
        await asyncio.sleep(every_s)


def create_app(
    settings: Settings,
    *,
    engine_factory: EngineFactory = load_llama_engine,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the service. The engine loads in the background so /health answers at once and
    /ready turns 200 when the model is usable; a load failure is reported through ``on_fatal``.
    Call ``begin_shutdown(app)`` when a stop signal arrives, before the server drains.
    """
    keys = KeyStore.from_settings(settings)
    memory_limit = MemoryLimit.detect()

    async def load_engine(app: FastAPI) -> None:
        try:
            engine = await asyncio.to_thread(engine_factory, settings)
        except Exception as exc:
            message = getattr(exc, "message", None) or f"model load failed: {exc}"
            log.error("%s", message)
            app.state.load_error = message
            if on_fatal is not None:
                on_fatal(message)
            return
        app.state.pool = InferencePool(
            engine,
            max_queue=settings.max_queue,
            request_timeout_s=settings.request_timeout_s,
            max_per_key=settings.max_inflight_per_key,
            min_free_bytes=settings.min_free_mb * 2**20,
            memory_limit=memory_limit,
            keepalive_s=settings.stream_keepalive_s,
            token_limits=app.state.rate_limits,
            metrics=app.state.metrics,
        )
        mark_worker_ready()
        full_ms = await asyncio.to_thread(snapshot_cost_s, 10) * 1000
        cheap_ms = await asyncio.to_thread(snapshot_cost_s, 10, fresh=False) * 1000
        log.info(
            "ready: serving %s (memory snapshot: %.2f ms per request, %.2f ms with PSS)",
            engine.info.id,
            cheap_ms,
            full_ms,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keys.generated_key is not None:
            # Printed once, to the console only: the key is never logged.
            print(
                "\nNo API key configured (GPTAPI_API_KEYS / GPTAPI_API_KEYS_FILE); generated one "
                f"for this run:\n\n    {keys.generated_key}\n",
                file=sys.stderr,
                flush=True,
            )
        log.info(
            "memory guard: %s; refusing new requests below %d MiB",
            memory_limit.describe(),
            settings.min_free_mb,
        )
        started_tracing = settings.tracemalloc and not tracemalloc.is_tracing()
        if started_tracing:
            tracemalloc.start()
        logs = [
            JsonLinesLog(
                settings.log_dir / name,
                max_bytes=settings.log_max_bytes,
                backups=settings.log_backups,
            )
            for name in ("requests.jsonl", "memory.jsonl")
        ]
        app.state.request_log = logs[0]
        tasks_ = [asyncio.create_task(load_engine(app))]
        if settings.mem_sample_s > 0:
            tasks_.append(asyncio.create_task(_sample_memory(app, logs[1], settings.mem_sample_s)))
        try:
            yield
        finally:
            for task in tasks_:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            pool: InferencePool | None = app.state.pool
            app.state.pool = None
            unmark_worker_ready()
            if pool is not None:
                pool.close()
            app.state.request_log = None
            for jsonl in logs:
                jsonl.close()
            if started_tracing:
                tracemalloc.stop()

    docs = settings.docs_enabled
    app = FastAPI(
        title="gptapi",
        version="0.1.0",
        summary="Self-hosted CPU LLM API over one memory-mapped GGUF model",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.pool = None
    app.state.load_error = None
    app.state.request_log = None
    app.state.metrics = Metrics()
    app.state.metrics.track_memory_limit(memory_limit)
    app.state.rate_limits = RateLimits(settings)
    install_error_handlers(app)
    routers = (health.router, tasks.router, openai.router, metrics.router)
    for router in routers:
        app.include_router(router)
    # Metric labels use these templates; anything else is "other" (no label explosion).
    app.state.route_paths = frozenset(
        getattr(route, "path", "") for router in routers for route in router.routes
    )
    # Routes declare a key by depending on it (limits.RateLimitedKey); /metrics decides by setting.
    app.state.keyed_paths = keyed_paths(route for r in routers for route in r.routes) | (
        frozenset() if settings.metrics_public else frozenset({"/metrics"})
    )

    def keyed() -> frozenset[str]:
        paths: frozenset[str] = app.state.keyed_paths
        return paths

    # Inner to outer: body checks; before them every rate limit (keys checked there, before the
    # body is read); security headers on everything, CORS, and the request context outermost.
    app.add_middleware(Guards, settings=settings, keyed=keyed)
    app.add_middleware(EdgeRateLimit, keyed=keyed)
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins.strip():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
            expose_headers=["X-Request-ID", "Retry-After", "X-RateLimit-Limit",
                            "X-RateLimit-Remaining", "X-RateLimit-Reset"],
        )  # fmt: skip
    # Outermost: every response, refusals by the guards included, gets a request id and a log line.
    app.add_middleware(RequestContextMiddleware)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``--workers N``): settings from GPTAPI_* only."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    set_header_timeout(settings.header_timeout_s)
    app = create_app(settings, on_fatal=end_the_server)
    _drain_on_stop_signal(app)
    return app


# Set by `gptapi serve --workers N` for its workers (not GPTAPI_ settings: internal).
FATAL_FILE_ENV = "_GPTAPI_FATAL_FILE"
SUPERVISOR_ENV = "_GPTAPI_SUPERVISOR_PID"


def end_the_server(message: str) -> None:
    """A worker whose model cannot load ends the whole server, instead of staying up answering
    503 forever next to the others: its line goes to the file the CLI named, then the CLI's
    process (uvicorn's supervisor) is asked to stop, and it exits 1 with that line."""
    path, supervisor = os.environ.get(FATAL_FILE_ENV), os.environ.get(SUPERVISOR_ENV)
    if path:
        with suppress(OSError):
            Path(path).write_text(message)
    if supervisor and supervisor.isdigit() and int(supervisor) == os.getppid():
        os.kill(os.getppid(), signal.SIGTERM)


def _drain_on_stop_signal(app: FastAPI) -> None:
    """A worker's uvicorn Server is uvicorn's own (the CLI's draining server runs one process
    only), and it has installed its SIGTERM/SIGINT handlers before it calls this factory: wrap
    them, so a worker refuses queued and new requests at once (503 ``draining``) and lets only
    the running ones finish, as one process does. Before, the queued ones were served while the
    grace lasted and dropped when it ended."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    try:
        loop = asyncio.get_running_loop()  # uvicorn's, while it loads the app
    except RuntimeError:
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(
            signum: int, frame: FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            # Signal handlers run between bytecodes; touch asyncio state from the loop.
            loop.call_soon_threadsafe(begin_shutdown, app)
            previous(signum, frame)

        signal.signal(sig, handler)


def begin_shutdown(app: FastAPI) -> None:
    """Stop admitting: queued and new requests get 503; running ones may finish."""
    pool: InferencePool | None = app.state.pool
    if pool is not None:
        pool.admission.drain()
