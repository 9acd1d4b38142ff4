"""Prometheus metrics (``GET /metrics``), one registry per app so tests and workers never share.

Names follow Prometheus conventions: ``gptapi_`` prefix, base units (seconds, bytes), counters
ending in ``_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gptapi.engine import PromptStats
from gptapi.errors import RefusalReason
from gptapi.telemetry.headroom import MemoryLimit
from gptapi.telemetry.memory import snapshot

# The label values of gptapi_refusals_total, each exported at 0 from the start (a dashboard
# shows 0, not "no data", before the first refusal).
REFUSAL_REASONS: tuple[str, ...] = get_args(RefusalReason)

# The label values of gptapi_v1_ignored_fields_total (any other name: "other"): fields of
# OpenAI's API and of its SDKs' requests that this server accepts and ignores.
KNOWN_IGNORED: tuple[str, ...] = (
    "store", "metadata", "service_tier", "reasoning_effort", "prompt_cache_key",
    "safety_identifier", "modalities", "audio", "prediction", "verbosity", "web_search_options",
    "parallel_tool_calls", "stream_options.include_obfuscation", "messages.id",
    "messages.refusal", "messages.annotations", "messages.audio", "messages.tool_calls",
    "messages.function_call", "messages.content.cache_control",
)  # fmt: skip

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
_RATIO_BUCKETS = (0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0)
_TOKEN_BUCKETS = (1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class _MemoryCollector(Collector):
    """Reads the memory snapshot at scrape time, so the gauges are never stale."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gptapi_process_memory_bytes",
            "Process memory by kind (rss, rss_anon, rss_file, rss_shmem, rss_peak, pss, uss, "
            "swap, tracemalloc_current, tracemalloc_peak)",
            labels=["kind"],
        )
        snap = snapshot()
        for name, value in snap.as_dict().items():
            if value is not None and name.endswith("_bytes") and name != "system_available_bytes":
                family.add_metric([name.removesuffix("_bytes")], float(value))
        yield family
        yield GaugeMetricFamily(
            "gptapi_system_available_memory_bytes",
            "MemAvailable of the machine",
            value=float(snap.system_available_bytes),
        )


class _HeadroomCollector(Collector):
    """What the memory guard sees, read at scrape time."""

    def __init__(self, limit: MemoryLimit) -> None:
        self._limit = limit

    def collect(self) -> Iterator[GaugeMetricFamily]:
        h = self._limit.read()
        yield GaugeMetricFamily(
            "gptapi_memory_headroom_bytes",
            "Memory the process may still take: the cgroup's memory.max minus its working set "
            "when limited, else MemAvailable (the GPTAPI_MIN_FREE_MB guard compares this)",
            value=float(h.available_bytes),
        )
        yield GaugeMetricFamily(
            "gptapi_memory_limit_bytes",
            "The tightest cgroup memory.max over this process (0: no limit)",
            value=float(h.limit_bytes or 0),
        )


class _PromptStatsCollector(Collector):
    """Prompt processing saved by sharing and by the prompt cache, read from the engine."""

    def __init__(self, stats: Callable[[], PromptStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._stats()
        counters = {
            "gptapi_prompt_tokens_shared": (
                "Prompt tokens taken over from another request's KV cache instead of computed",
                s.shared_tokens,
            ),
            "gptapi_prompt_cache_hit_tokens": (
                "Prompt tokens restored from the prompt cache instead of computed",
                s.cache_hit_tokens,
            ),
            "gptapi_prompt_cache_miss_tokens": (
                "Prompt tokens of new requests the prompt cache did not hold",
                s.cache_miss_tokens,
            ),
            "gptapi_prompt_cache_evictions": (
                "Prompt cache entries evicted to make room (least recently used first)",
                s.cache_evictions,
            ),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(name, doc, value=float(value))
        gauges = {
            "gptapi_prompt_cache_entries": ("Prompt cache entries held", s.cache_entries),
            "gptapi_prompt_cache_bytes": ("Host RAM held by prompt cache entries", s.cache_bytes),
            "gptapi_prompt_cache_budget_bytes": (
                "GPTAPI_PROMPT_CACHE_MB: what the entries may hold at most",
                s.cache_budget_bytes,
            ),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=float(value))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gptapi_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "gptapi_request_duration_seconds",
            "End-to-end request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "gptapi_queue_seconds", "Time waiting for a slot", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.ttft_seconds = Histogram(
            "gptapi_time_to_first_token_seconds",
            "From arrival to the first generated token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.completion_tokens_per_request = Histogram(
            "gptapi_completion_tokens_per_request",
            "Generated tokens per request",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("gptapi_prompt_tokens", "Prompt tokens processed", registry=r)
        self.completion_tokens = Counter("gptapi_completion_tokens", "Tokens generated", registry=r)
        self.refusals = Counter(
            "gptapi_refusals",
            "Requests refused before generation, by reason",
            ["reason"],
            registry=r,
        )
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        # Goodput = finished_in_time / accepted: the share of the work taken on that paid off.
        self.accepted = Counter(
            "gptapi_accepted_requests",
            "Requests past every refusal (deadline forecast included) that went on to wait "
            "for a slot and generate",
            registry=r,
        )
        self.finished_in_time = Counter(
            "gptapi_finished_in_time_requests",
            "Accepted requests that finished within their time limit (not timed out, failed "
            "or cancelled)",
            registry=r,
        )
        self.forecast_ratio = Histogram(
            "gptapi_finish_forecast_ratio",
            "Actual latency / latency the deadline forecast gave at admission, per finished "
            "request (1 = exact; above 1: it took longer than forecast)",
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.v1_ignored_fields = Counter(
            "gptapi_v1_ignored_fields",
            "Unknown fields in /v1 bodies, ignored (GPTAPI_V1_STRICT off), by name or 'other'",
            ["field"],
            registry=r,
        )
        for field in (*KNOWN_IGNORED, "other"):
            self.v1_ignored_fields.labels(field)
        self.busy_slots = Gauge("gptapi_busy_slots", "Requests decoding now", registry=r)
        self.queue_depth = Gauge("gptapi_queue_depth", "Requests waiting for a slot", registry=r)
        self.slots = Gauge("gptapi_slots", "Requests that can decode at once", registry=r)
        r.register(_MemoryCollector())

    def track_admission(
        self, busy: Callable[[], int], queued: Callable[[], int], slots: int
    ) -> None:
        self.busy_slots.set_function(lambda: float(busy()))
        self.queue_depth.set_function(lambda: float(queued()))
        self.slots.set(slots)

    def track_memory_limit(self, limit: MemoryLimit) -> None:
        self.registry.register(_HeadroomCollector(limit))

    def track_prompt_stats(self, stats: Callable[[], PromptStats]) -> None:
        self.registry.register(_PromptStatsCollector(stats))
