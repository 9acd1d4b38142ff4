"""Service settings, read from ``GPTAPI_*`` environment variables (never at import time)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import psutil
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_FILE = "google_gemma-3-4b-it-Q8_0.gguf"


def physical_cores() -> int:
    """Physical cores, because llama.cpp threads spin-wait and hyper-threads only add contention."""
    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


_KEY_ID = re.compile(r"^[0-9a-f]{8}$")


def cache_groups(spec: str) -> dict[str, str] | None:
    """``GPTAPI_PROMPT_CACHE_GROUPS`` as key id -> group name; None for '*' (one group)."""
    spec = spec.strip()
    if spec == "*":
        return None
    groups: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, members = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected 'group=keyid,keyid', got {part!r}")
        for key_id in filter(None, (m.strip().lower() for m in members.split(","))):
            if not _KEY_ID.match(key_id):
                raise ValueError(f"{key_id!r} is not a key id (8 hex characters, as logged)")
            if key_id in groups:
                raise ValueError(f"key id {key_id} is in two groups")
            groups[key_id] = name.strip()
    return groups


class Settings(BaseSettings):
    """Every knob of the service. Each field maps to ``GPTAPI_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="GPTAPI_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the service and uvicorn."
    )

    model_path: Path | None = Field(
        None, description="GGUF file to serve. Unset: the heavy model in models_dir, else embedded."
    )
    models_dir: Path = Field(
        Path("models"), description="Where scripts/download_model.py puts the heavy model."
    )
    default_model_file: str = Field(
        DEFAULT_MODEL_FILE, description="File name of the heavy default model inside models_dir."
    )
    engine: Literal["batched", "pool"] = Field(
        "batched",
        description="batched: continuous batching of all slots in one context; "
        "pool: one context per slot (at most one per thread), for comparison.",
    )
    slots: int = Field(
        8, ge=1, le=256, description="Requests that decode at once; each has its own KV cache."
    )
    max_queue: int = Field(
        64, ge=0, le=100_000, description="Requests that may wait for a slot; beyond: 503."
    )
    max_inflight_per_key: int = Field(
        48,
        ge=1,
        le=100_000,
        description="Requests one key may have decoding or queued at once; beyond: 429. Keys "
        "are served in turn from the queue, so one key cannot starve another.",
    )
    step_target_ms: int = Field(
        250,
        ge=0,
        le=600_000,
        description="Longest decode step while requests are streaming tokens: prompt chunks "
        "are sized from the measured speeds so a step stays near this (0 = always n_batch).",
    )
    unstreamed_step_target_ms: int = Field(
        0,
        ge=0,
        le=600_000,
        description="Longest decode step while only requests that do not stream are decoding "
        "(their clients wait for the whole answer): 0 = whole n_batch prompt chunks, the most "
        "prompt tokens per second.",
    )
    stream_keepalive_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds between SSE comments (queue position, then prompt progress) "
        "sent to a stream that has no token yet, so proxies do not time it out.",
    )
    request_timeout_s: float = Field(
        300.0, gt=0, le=86_400, description="Wall-clock limit per request, queue time included."
    )
    deadline_forecast: bool = Field(
        True,
        description="Forecast when each request would finish (measured speeds, the work ahead "
        "of it) and refuse at once (503 deadline_unmeetable) one that would end past its time "
        "limit, instead of a 504 after the wait.",
    )
    deadline_margin: float = Field(
        1.1,
        ge=1.0,
        le=3.0,
        description="A request is admitted only if its forecast time to finish x this margin is "
        "within its limit: the first forecasts of a burst use speeds measured at start-up, "
        "before anything was served, and served steps ran 1.09-1.66x slower than the first such "
        "measurement on the 4B twin (docs/stress-test.md). 1.0: none.",
    )
    shutdown_grace_s: float = Field(
        30.0, ge=0, le=3600, description="On SIGTERM, how long running requests may finish."
    )
    n_ctx: int = Field(
        4096,
        ge=256,
        le=131072,
        description="Context window (prompt + output tokens) of each slot; "
        "the KV cache holds slots x n_ctx tokens.",
    )
    n_threads: int = Field(
        default_factory=physical_cores,
        ge=1,
        le=256,
        description="llama.cpp threads; defaults to the number of physical cores.",
    )
    n_batch: int = Field(
        512,
        ge=32,
        le=8192,
        description="Most tokens per llama_decode step: decoding tokens first, then prompt chunks.",
    )
    kv_unified: bool = Field(
        True,
        description="One KV buffer for all slots (fast attention with short contexts) instead of "
        "one per slot (attention never scans other slots' cells: better with long prompts).",
    )
    share_prefixes: bool = Field(
        True,
        description="Compute a prompt prefix shared by concurrent requests (system prompt, chat "
        "template) once and share its KV cells; needs kv_unified.",
    )
    prompt_cache_mb: int = Field(
        512,
        ge=0,
        le=2**20,
        description="Host RAM for prompt KV kept after requests end, so a later request with the "
        "same prefix (system prompt, earlier turns, a retry) skips computing it; LRU, 0 = off.",
    )
    prompt_cache_groups: str = Field(
        "",
        description="Keys whose requests may reuse each other's computed prompts (prompt cache "
        "and concurrent prefix sharing), as 'group=keyid,keyid;group2=keyid', key ids as in the "
        "logs (8 hex chars), or '*' for all keys. Empty (default): each key reuses only its "
        "own, since a reused prefix shows in cached_tokens and TTFT (a side channel).",
    )
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field(
        "f16",
        description="Precision of the KV cache: q8_0 halves its RAM (q4_0 quarters it) at a small "
        "cost in accuracy; f16 is llama.cpp's default.",
    )
    use_mmap: bool = Field(
        True, description="Memory-map the weights (shared page cache) instead of reading them."
    )

    api_keys: SecretStr | None = Field(
        None,
        description="Comma-separated clear API keys. Unset with no keys file: one is generated.",
    )
    api_keys_file: Path | None = Field(
        None, description="File with one SHA-256 hex digest of an API key per line."
    )

    log_dir: Path = Field(
        Path("logs"), description="Where requests.jsonl and memory.jsonl are written."
    )
    log_text: bool = Field(
        False, description="Also log prompts and outputs in requests.jsonl (off: never logged)."
    )
    log_max_bytes: int = Field(
        50 * 2**20, ge=2**16, le=2**40, description="Size at which a JSON-lines log rotates."
    )
    log_backups: int = Field(
        5,
        ge=0,
        le=1000,
        description="Rotated log files kept per log; 0: none, the file starts over at the cap.",
    )
    mem_sample_s: float = Field(
        1.0, ge=0, le=3600, description="Seconds between memory.jsonl samples (0 = off)."
    )
    monitor_recent_requests: int = Field(
        100,
        ge=0,
        le=1000,
        description="Last requests (their request-log fields: tokens, timings, RAM; no text, "
        "key ids only) each process keeps in memory for GET /monitor/requests and the page at "
        "/ (0 = none kept).",
    )
    min_free_mb: int = Field(
        256,
        ge=0,
        le=2**24,
        description="Refuse new requests (503) while less memory is left than this: under a "
        "cgroup limit (systemd MemoryMax, container limit) its limit minus its working set, "
        "else the machine's MemAvailable (0 = off).",
    )
    tracemalloc: bool = Field(
        False,
        description="Trace Python heap allocations for the memory log's tracemalloc fields. Off "
        "by default: it cost 8-26 % of throughput in paired rounds (docs/memory.md); "
        "gptapi-bench matrix turns it on for its stress runs.",
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without an API key (e.g. to a private scraper)."
    )

    rate_limit: str = Field(
        "600/minute",
        description="Per-key limit on the generation routes, e.g. '120/minute' or "
        "'10/second;600/hour' (slowapi/limits syntax).",
    )
    rate_limit_burst: str = Field(
        "60/second",
        description="Per-key burst limit on every keyed route, counted besides rate_limit.",
    )
    rate_limit_unauthenticated: str = Field(
        "600/minute",
        description="Per-client-IP limit on the open paths (health, readiness, docs); "
        "a second budget of this size counts requests to any other path without a valid key "
        "(401s): once spent, those get 429.",
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where rate-limit counters live: memory:// (one process) or redis://host:port "
        "(shared by workers and replicas).",
    )

    forwarded_allow_ips: str = Field(
        "",
        description="Comma-separated proxy IPs whose X-Forwarded-For is trusted for the client IP "
        "(e.g. 127.0.0.1 behind a local nginx); empty: the socket's peer address.",
    )

    token_rate_limit: str = Field(
        "100000/minute",
        description="Per-key limit on tokens (prompt + completion) in a fixed window, e.g. "
        "'20000/minute;500000/day'; counted where rate_limit is (Redis across replicas).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Invariants between settings, checked at start with one clear line each."""
        if self.engine == "batched" and self.slots > self.n_batch:
            raise ValueError(
                f"GPTAPI_SLOTS ({self.slots}) is larger than GPTAPI_N_BATCH ({self.n_batch}): "
                "a decode step must hold one token of every slot"
            )
        return self

    @field_validator("prompt_cache_groups")
    @classmethod
    def _valid_cache_groups(cls, value: str) -> str:
        cache_groups(value)  # raises ValueError with the reason
        return value

    @field_validator(
        "rate_limit", "rate_limit_burst", "rate_limit_unauthenticated", "token_rate_limit"
    )
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)  # raises ValueError with the reason
        return value

    max_tokens_limit: int = Field(
        1024, ge=1, le=32768, description="Largest max_tokens a request may ask for."
    )
    default_max_tokens: int = Field(
        128, ge=1, le=32768, description="max_tokens used when a request does not set it."
    )
    max_prompt_chars: int = Field(
        32768,
        ge=16,
        le=1_000_000,
        description="Most characters a request puts into its prompt: all its text fields (all "
        "chat messages, question + context) together.",
    )
    max_stop_strings: int = Field(4, ge=0, le=64, description="Most stop strings per request.")
    max_stop_chars: int = Field(64, ge=1, le=1024, description="Longest stop string, characters.")
    max_body_bytes: int = Field(
        256 * 2**10,
        ge=2**10,
        le=64 * 2**20,
        description="Largest request body; bigger ones get 413 as soon as the excess is read.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Time a client has to send its whole request body; slower ones get 408.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Time a client has to send a request's headers (on a new connection, or "
        "once the next request on a kept-alive one starts); slower ones are disconnected.",
    )
    max_header_bytes: int = Field(
        32 * 2**10,
        ge=2**10,
        le=2**20,
        description="Most bytes of a request's head (request line and headers); beyond: 431 and "
        "the connection closed, before authentication, as soon as the excess arrives.",
    )
    max_headers: int = Field(
        100, ge=8, le=1000, description="Most header lines in a request; beyond: 431."
    )
    keepalive_timeout_s: float = Field(
        5.0, gt=0, le=600, description="An idle kept-alive connection is closed after this."
    )
    limit_concurrency: int = Field(
        1024,
        ge=1,
        le=100_000,
        description="Open connections + requests in progress per process; beyond, uvicorn "
        "answers 503 (plain text, before the app) — a last wall well above GPTAPI_MAX_QUEUE.",
    )
    v1_strict: bool = Field(
        False,
        description="Refuse unknown fields in /v1 bodies with a 400 naming them. Off: ignored "
        "like OpenAI's peers do, logged once per name, counted in gptapi_v1_ignored_fields_total.",
    )
    docs_enabled: bool = Field(
        True, description="Serve /docs, /redoc and /openapi.json (turn off to hide the schema)."
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins browsers may call the API from ('*' for any); "
        "empty: CORS off.",
    )
