"""The application factory. Nothing here runs at import time; ``create_app`` wires it all."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptapi.api import health, tasks
from gptapi.auth import KeyStore
from gptapi.config import Settings
from gptapi.engine import Engine
from gptapi.errors import install_error_handlers
from gptapi.pool import InferencePool

log = logging.getLogger("gptapi")

EngineFactory = Callable[[Settings], Engine]
REQUEST_ID_HEADER = "X-Request-ID"


def load_llama_engine(settings: Settings) -> Engine:
    from gptapi.engine.llama import load_engine

    return load_engine(settings)


class RequestIdMiddleware:
    """Gives every request an id, visible to handlers and returned as a response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


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
            engine, max_queue=settings.max_queue, request_timeout_s=settings.request_timeout_s
        )
        log.info("ready: serving %s", engine.info.id)

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
        loader = asyncio.create_task(load_engine(app))
        try:
            yield
        finally:
            loader.cancel()
            with suppress(asyncio.CancelledError):
                await loader
            pool: InferencePool | None = app.state.pool
            app.state.pool = None
            if pool is not None:
                pool.close()

    app = FastAPI(
        title="gptapi",
        version="0.1.0",
        summary="Self-hosted CPU LLM API over one memory-mapped GGUF model",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.pool = None
    app.state.load_error = None
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.add_middleware(RequestIdMiddleware)
    return app


def begin_shutdown(app: FastAPI) -> None:
    """Stop admitting: queued and new requests get 503; running ones may finish."""
    pool: InferencePool | None = app.state.pool
    if pool is not None:
        pool.admission.drain()
