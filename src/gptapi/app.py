"""The application factory. Nothing here runs at import time; ``create_app`` wires it all."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import UTC, datetime

from fastapi import FastAPI

from gptapi import __version__, edge
from gptapi.api import ROUTERS
from gptapi.config import Settings, cache_groups
from gptapi.edge.auth import KeyStore
from gptapi.edge.ratelimit import RateLimits
from gptapi.engine import Engine
from gptapi.gateway import Gateway, cache_scope_for
from gptapi.serve import mark_worker_ready, unmark_worker_ready
from gptapi.telemetry.headroom import MemoryLimit
from gptapi.telemetry.memory import snapshot, snapshot_cost_s
from gptapi.telemetry.metrics import Metrics
from gptapi.telemetry.recent import RecentRequests
from gptapi.telemetry.requestlog import JsonLinesLog

log = logging.getLogger("gptapi")

EngineFactory = Callable[[Settings], Engine]


def load_llama_engine(settings: Settings) -> Engine:
    from gptapi.engine.llama import load_engine

    return load_engine(settings)


_PSS_REFRESH_S = 10.0


async def _sample_memory(app: FastAPI, memory_log: JsonLinesLog, every_s: float) -> None:
    """memory.jsonl: one snapshot per interval, so RAM can be plotted over a stress test. PSS is
    re-read every 10 s only: smaps_rollup cost 31-34 ms with the 4 GB model mapped in the start-up
    logs of 2026-12-07 (up to ~115 ms in earlier runs)."""
    last_fresh = -_PSS_REFRESH_S
    while True:
        now = time.monotonic()
        fresh = now - last_fresh >= _PSS_REFRESH_S
        if fresh:
            last_fresh = now
        snap = await asyncio.to_thread(snapshot, fresh=fresh)
        gateway: Gateway | None = app.state.gateway
        memory_log.write(
            {
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "busy_slots": None if gateway is None else gateway.admission.busy,
                "queued": None if gateway is None else gateway.admission.queued,
                **snap.as_dict(),
            }
        )
        await asyncio.sleep(every_s)


async def _load_engine(
    app: FastAPI, engine_factory: EngineFactory, on_fatal: Callable[[str], None] | None
) -> None:
    """Load the model in a thread, then open the gateway: /ready turns 200."""
    settings: Settings = app.state.settings
    try:
        engine = await asyncio.to_thread(engine_factory, settings)
    except Exception as exc:
        message = getattr(exc, "message", None) or f"model load failed: {exc}"
        log.error("%s", message)
        app.state.load_error = message
        if on_fatal is not None:
            on_fatal(message)
        return
    app.state.gateway = Gateway(
        engine,
        max_queue=settings.max_queue,
        request_timeout_s=settings.request_timeout_s,
        refuse_late=settings.deadline_forecast,
        deadline_margin=settings.deadline_margin,
        max_per_key=settings.max_inflight_per_key,
        min_free_bytes=settings.min_free_mb * 2**20,
        memory_limit=app.state.memory_limit,
        keepalive_s=settings.stream_keepalive_s,
        token_limits=app.state.rate_limits,
        metrics=app.state.metrics,
        cache_scope=app.state.cache_scope,
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


def _lifespan(
    engine_factory: EngineFactory, on_fatal: Callable[[str], None] | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        keys: KeyStore = app.state.keys
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
            app.state.memory_limit.describe(),
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
        tasks_ = [asyncio.create_task(_load_engine(app, engine_factory, on_fatal))]
        if settings.mem_sample_s > 0:
            tasks_.append(asyncio.create_task(_sample_memory(app, logs[1], settings.mem_sample_s)))
        try:
            yield
        finally:
            for task in tasks_:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            gateway: Gateway | None = app.state.gateway
            app.state.gateway = None
            unmark_worker_ready()
            if gateway is not None:
                gateway.close()
            app.state.request_log = None
            for jsonl in logs:
                jsonl.close()
            if started_tracing:
                tracemalloc.stop()

    return lifespan


def create_app(
    settings: Settings,
    *,
    engine_factory: EngineFactory = load_llama_engine,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the service. The engine loads in the background so /health answers at once and
    /ready turns 200 when the model is usable; a load failure is reported through ``on_fatal``.
    Call ``serve.begin_shutdown(app)`` when a stop signal arrives, before the server drains.
    """
    keys = KeyStore.from_settings(settings)
    docs = settings.docs_enabled
    app = FastAPI(
        title="gptapi",
        version=__version__,
        summary="Self-hosted CPU LLM API over one memory-mapped GGUF model",
        lifespan=_lifespan(engine_factory, on_fatal),
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.gateway = None
    app.state.load_error = None
    app.state.request_log = None
    app.state.recent_requests = RecentRequests(settings.monitor_recent_requests)
    # Which keys share computed prompts: the gateway's cache scope and the monitor's view.
    app.state.cache_scope = cache_scope_for(cache_groups(settings.prompt_cache_groups))
    app.state.memory_limit = MemoryLimit.detect()
    app.state.metrics = Metrics()
    app.state.metrics.track_memory_limit(app.state.memory_limit)
    app.state.rate_limits = RateLimits(settings)
    for router in ROUTERS:
        app.include_router(router)
    # Metric labels use these templates; anything else is "other" (no label explosion).
    app.state.route_paths = frozenset(
        getattr(route, "path", "") for router in ROUTERS for route in router.routes
    )
    edge.install(app, settings, keys, app.state.rate_limits)
    return app
