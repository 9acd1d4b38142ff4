"""The settings of every gptapi server a benchmark starts (``gptapi-bench matrix``,
``python -m bench.engines``), defined once: one API key, and the queue, the rate limits and the
per-key limits lifted far above any load a benchmark sends, so what is measured is the engine,
never a 429 or a 503 from the admission rules (gptapi's defaults: a queue of 64, 48 requests in
flight per key)."""

from __future__ import annotations

from pathlib import Path

API_KEY = "bench-key-0123456789abcdef"

LIFTED_LIMITS = {
    "GPTAPI_MAX_QUEUE": "10000",
    "GPTAPI_RATE_LIMIT": "1000000/minute",
    "GPTAPI_RATE_LIMIT_BURST": "1000000/second",
    "GPTAPI_RATE_LIMIT_UNAUTHENTICATED": "1000000/minute",
    "GPTAPI_TOKEN_RATE_LIMIT": "1000000000/minute",
    "GPTAPI_MAX_INFLIGHT_PER_KEY": "100000",
}


def server_env(
    *, threads: int, ctx: int, request_timeout_s: float, model: Path | None, **settings: str
) -> dict[str, str]:
    """The GPTAPI_* variables of a benchmark's server: the key, the lifted limits, llama.cpp
    threads, context per slot, the per-request timeout (the client's: the server gives up when
    the client would), the model when one is given (else the embedded one), then ``settings``
    (engine, slots, log dir, ...) over all of them."""
    env = {
        "GPTAPI_API_KEYS": API_KEY,
        **LIFTED_LIMITS,
        "GPTAPI_N_THREADS": str(threads),
        "GPTAPI_N_CTX": str(ctx),
        "GPTAPI_REQUEST_TIMEOUT_S": str(request_timeout_s),
    }
    if model:
        env["GPTAPI_MODEL_PATH"] = str(model)
    return env | settings
