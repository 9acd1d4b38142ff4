"""The live monitor's JSON: ``GET /monitor/stats`` (memory, slots, queue, token and refusal
counts, prompt cache) and ``GET /monitor/requests`` (the last requests, from the request log).

Both need a key and count against its rate limits like every keyed path. They read what the
process already keeps (the Prometheus counters, the admission's counts, the engine's prompt
stats, ``/proc`` through ``telemetry.memory``) and compute nothing per request, so the page can
poll them every second or two while gptapi-bench hammers the server. Counters are totals since
the process started: the page turns them into rates.

With ``--workers N`` each process answers for itself (its own memory, slots, counters and
ring): a poll reaches one of them, named by ``pid``. Prometheus (``/metrics`` scraped per
worker, or deploy/'s dashboard) is the place for the sum.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from prometheus_client import Counter
from pydantic import BaseModel, Field

from gptapi.api.deps import KeyDep
from gptapi.api.schemas import ErrorResponse
from gptapi.gateway import Gateway
from gptapi.telemetry.headroom import Headroom, MemoryLimit
from gptapi.telemetry.memory import MemorySnapshot, snapshot
from gptapi.telemetry.metrics import Metrics
from gptapi.telemetry.recent import RecentRequests

router = APIRouter(prefix="/monitor", tags=["monitor"])

_KEYED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, malformed or unknown API key"},
    429: {"model": ErrorResponse, "description": "This key's rate limit is exhausted"},
}
# PSS/USS walk every page table (31-34 ms with the 4 GB model mapped): a poll reuses the last
# reading (the memory sampler's, refreshed every 10 s) and reads its own only when there is none
# that recent, e.g. with GPTAPI_MEM_SAMPLE_S=0.
_PSS_MAX_AGE_S = 15.0


class MemoryNow(BaseModel):
    """This process's memory now (``telemetry.memory``; None where the kernel has no field)."""

    rss_bytes: int | None
    rss_anon_bytes: int | None = Field(description="Anonymous: KV cache, buffers, Python heap.")
    rss_file_bytes: int | None = Field(description="File-backed: the mmap'd weights (shared).")
    rss_shmem_bytes: int | None
    rss_peak_bytes: int | None
    pss_bytes: int | None = Field(description="Shared pages divided among their processes.")
    uss_bytes: int | None = Field(description="Private pages: what ending this process frees.")
    swap_bytes: int | None
    rollup_age_s: float | None = Field(description="Age of the pss, uss and swap reading.")
    system_available_bytes: int
    tracemalloc_current_bytes: int | None
    tracemalloc_peak_bytes: int | None
    headroom_bytes: int = Field(
        description="What the process may still take: what GPTAPI_MIN_FREE_MB is compared with."
    )
    limit_bytes: int | None = Field(description="The tightest cgroup memory.max, if any.")


class PromptCacheNow(BaseModel):
    entries: int
    bytes: int
    budget_bytes: int
    hit_tokens: int = Field(description="Prompt tokens restored from the cache (total).")
    miss_tokens: int = Field(description="Prompt tokens of new requests it did not hold (total).")
    shared_tokens: int = Field(description="Prompt tokens shared with concurrent requests.")
    evictions: int


class MonitorStats(BaseModel):
    pid: int = Field(description="The process that answered (one of them with --workers N).")
    monotonic_s: float = Field(description="Its monotonic clock: rates are counter deltas over it.")
    timestamp: str
    model: str | None = Field(description="None while the model is loading.")
    slots: int | None
    busy_slots: int | None = Field(description="Requests decoding now.")
    queued: int | None = Field(description="Requests waiting for a slot.")
    memory: MemoryNow
    prompt_cache: PromptCacheNow | None
    requests_total: int = Field(description="HTTP requests answered, every route and status.")
    prompt_tokens_total: int
    completion_tokens_total: int
    accepted_total: int = Field(description="Requests that went on to queue and generate.")
    finished_in_time_total: int
    refusals: dict[str, int] = Field(description="Requests refused before generating, by reason.")


class RecentRequest(BaseModel):
    """One request, as its request-log line has it, without text (``telemetry.recent``)."""

    timestamp: str
    request_id: str
    key_id: str = Field(description="8 hex chars of the key's SHA-256: never the key.")
    route: str
    method: str
    task: str | None
    status: int
    end_reason: str | None
    prompt_tokens: int | None
    cached_tokens: int | None
    completion_tokens: int | None
    queue_ms: float | None
    ttft_ms: float | None
    forecast_ms: float | None
    total_ms: float
    tokens_per_s: float | None
    busy_slots_at_admission: int | None
    queue_depth_at_admission: int | None
    memory_start: dict[str, int | float | None] | None
    memory_end: dict[str, int | float | None] | None
    memory_delta: dict[str, int | None] | None


class RecentRequestList(BaseModel):
    pid: int
    capacity: int = Field(description="GPTAPI_MONITOR_RECENT_REQUESTS: entries this process keeps.")
    requests: list[RecentRequest] = Field(description="Newest first.")


def _memory_now(limit: MemoryLimit) -> tuple[MemorySnapshot, Headroom]:
    snap = snapshot(fresh=False)
    if snap.rollup_age_s is None or snap.rollup_age_s > _PSS_MAX_AGE_S:
        snap = snapshot(fresh=True)
    return snap, limit.read()


def _total(counter: Counter) -> int:
    """A counter's value summed over its labels (collecting one metric is cheap; collecting
    the registry would read /proc for the memory gauges)."""
    return int(
        sum(s.value for f in counter.collect() for s in f.samples if s.name.endswith("_total"))
    )


def _by_label(counter: Counter, label: str) -> dict[str, int]:
    return {
        s.labels[label]: int(s.value)
        for f in counter.collect()
        for s in f.samples
        if s.name.endswith("_total")
    }


@router.get("/stats", summary="The process now: memory, slots, queue, counters", responses=_KEYED)
async def stats(request: Request, _key: KeyDep) -> MonitorStats:
    state = request.app.state
    snap, headroom = await asyncio.to_thread(_memory_now, state.memory_limit)
    metrics: Metrics = state.metrics
    gateway: Gateway | None = state.gateway
    prompt_cache = None
    if gateway is not None:
        p = gateway.engine.prompt_stats()
        prompt_cache = PromptCacheNow(
            entries=p.cache_entries, bytes=p.cache_bytes, budget_bytes=p.cache_budget_bytes,
            hit_tokens=p.cache_hit_tokens, miss_tokens=p.cache_miss_tokens,
            shared_tokens=p.shared_tokens, evictions=p.cache_evictions,
        )  # fmt: skip
    return MonitorStats(
        pid=os.getpid(),
        monotonic_s=time.monotonic(),
        timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
        model=None if gateway is None else gateway.engine.info.id,
        slots=None if gateway is None else gateway.admission.slots,
        busy_slots=None if gateway is None else gateway.admission.busy,
        queued=None if gateway is None else gateway.admission.queued,
        memory=MemoryNow(
            **snap.as_dict(),
            headroom_bytes=headroom.available_bytes,
            limit_bytes=headroom.limit_bytes,
        ),
        prompt_cache=prompt_cache,
        requests_total=_total(metrics.requests),
        prompt_tokens_total=_total(metrics.prompt_tokens),
        completion_tokens_total=_total(metrics.completion_tokens),
        accepted_total=_total(metrics.accepted),
        finished_in_time_total=_total(metrics.finished_in_time),
        refusals=_by_label(metrics.refusals, "reason"),
    )


@router.get(
    "/requests",
    summary="The last requests this process served, with their RAM fields (no text)",
    responses={
        **_KEYED,
        422: {"model": ErrorResponse, "description": "limit outside 1..1000"},
    },
)
async def recent_requests(
    request: Request,
    key_id: KeyDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most entries to return.")] = 100,
) -> RecentRequestList:
    """A key sees the requests of the keys whose computed prompts it may reuse
    (``GPTAPI_PROMPT_CACHE_GROUPS``: by default its own only): another key's cached_tokens and
    time to first token would tell it which prompts that key sent, the side channel the
    setting guards."""
    scope: Callable[[str], str] = request.app.state.cache_scope
    own = scope(key_id)
    ring: RecentRequests = request.app.state.recent_requests
    entries = ring.latest(limit, lambda other: scope(other) == own)
    return RecentRequestList(
        pid=os.getpid(),
        capacity=ring.capacity,
        requests=[RecentRequest.model_validate(e) for e in entries],
    )
