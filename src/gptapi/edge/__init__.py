"""The edge: everything between the socket and a route, one module per layer.

The order of the layers, outermost first, is written once, in ``install``:

0. ``transport`` (uvicorn's HTTP protocol, before ASGI): header bytes, count and time bounded;
   no WebSocket upgrade is ever accepted (``uvicorn_options``).
1. ``context``: request id, the request record, its log line and metrics, the one 500.
2. ``headers``: security headers on every response, refusals by the layers below included.
3. CORS (only when ``GPTAPI_CORS_ORIGINS`` is set).
4. ``auth``: the one place a key is checked. Closed by default: every path outside
   ``OPEN_PATHS`` needs a key, whatever route (or none) serves it.
5. ``ratelimit``: per key, or per client address on an open path.
6. ``body``: UTF-8 JSON only, bounded in bytes and time.
7. ``responses``: the one error renderer, for refusals of the routes (exception handlers).

Authentication and rate limits come before the body on purpose: a client without a valid key
never makes the server read (or wait for) up to 256 KiB.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gptapi.config import Settings
from gptapi.edge.auth import Authentication, KeyStore
from gptapi.edge.body import BodyRules
from gptapi.edge.context import RequestContext
from gptapi.edge.headers import SecurityHeaders
from gptapi.edge.ratelimit import RateLimit, RateLimits
from gptapi.edge.responses import install_error_handlers
from gptapi.web import PAGE_PATHS

# Paths anyone may call without a key: probes, the API's own description, and the playground
# page with its static files (exact paths, listed in gptapi.web; every call the page makes needs
# a key). Everything else needs one, including paths no route serves (a 404 is for key holders
# only).
OPEN_PATHS = (
    frozenset({"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
    | PAGE_PATHS
)


def open_paths(settings: Settings) -> frozenset[str]:
    return OPEN_PATHS | ({"/metrics"} if settings.metrics_public else frozenset())


def install(app: FastAPI, settings: Settings, keys: KeyStore, limits: RateLimits) -> None:
    """Add the edge layers to ``app``, listed outermost first (Starlette wraps each middleware
    added around the ones added before it, so they are added in reverse)."""
    layers: list[tuple[type, dict[str, object]]] = [
        (RequestContext, {}),
        (SecurityHeaders, {}),
    ]
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        layers.append(
            (
                CORSMiddleware,
                {
                    "allow_origins": origins,
                    "allow_methods": ["GET", "POST"],
                    "allow_headers": ["Authorization", "Content-Type", "X-API-Key",
                                      "X-Request-Timeout"],
                    "expose_headers": ["X-Request-ID", "Retry-After", "X-RateLimit-Limit",
                                       "X-RateLimit-Remaining", "X-RateLimit-Reset"],
                },
            )
        )  # fmt: skip
    layers += [
        (Authentication, {"keys": keys, "open_paths": open_paths(settings)}),
        (RateLimit, {"limits": limits}),
        (BodyRules, {"settings": settings}),
    ]
    for layer, options in reversed(layers):
        app.add_middleware(layer, **options)  # type: ignore[arg-type]
    install_error_handlers(app)
