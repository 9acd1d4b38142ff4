"""Write deploy/grafana/gptapi.json, the Grafana dashboard for gptapi's /metrics.

The panels and their PromQL live here, readable; `tests/system/deploy/test_dashboard.py` runs every
query against a real Prometheus scraping a real gptapi. Run: python scripts/make_dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "gptapi.json"
RATE = "$__rate_interval"


def quantile(q: float, histogram: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({histogram}_bucket[{RATE}])))"


# (title, unit, [(legend, PromQL)], width)
PANELS: list[tuple[str, str, list[tuple[str, str]], int]] = [
    ("Process memory (RSS, PSS, anonymous, file-backed)", "bytes", [
        ("{{kind}}", 'gptapi_process_memory_bytes{kind=~"rss|pss|rss_anon|rss_file"}'),
    ], 12),
    ("Memory guard: headroom and cgroup limit", "bytes", [
        ("headroom", "gptapi_memory_headroom_bytes"),
        ("cgroup limit (0: none)", "gptapi_memory_limit_bytes"),
        ("host MemAvailable", "gptapi_system_available_memory_bytes"),
    ], 12),
    ("Tokens per second", "short", [
        ("generated", f"sum(rate(gptapi_completion_tokens_total[{RATE}]))"),
        ("prompt", f"sum(rate(gptapi_prompt_tokens_total[{RATE}]))"),
    ], 8),
    ("Time to first token (p50, p95)", "s", [
        ("p50", quantile(0.5, "gptapi_time_to_first_token_seconds")),
        ("p95", quantile(0.95, "gptapi_time_to_first_token_seconds")),
    ], 8),
    ("Request latency by route (p95)", "s", [
        ("{{route}}", quantile(0.95, "gptapi_request_duration_seconds", "le, route")),
    ], 8),
    ("Slots and queue", "short", [
        ("busy slots", "sum(gptapi_busy_slots)"),
        ("slots", "sum(gptapi_slots)"),
        ("queued", "sum(gptapi_queue_depth)"),
    ], 8),
    ("Refusals by reason (per second)", "reqps", [
        ("{{reason}}", f"sum by (reason) (rate(gptapi_refusals_total[{RATE}]))"),
    ], 8),
    ("Responses by status (per second)", "reqps", [
        ("{{status}}", f"sum by (status) (rate(gptapi_requests_total[{RATE}]))"),
    ], 8),
    ("Prompt cache: held and budget", "bytes", [
        ("held", "sum(gptapi_prompt_cache_bytes)"),
        ("budget", "sum(gptapi_prompt_cache_budget_bytes)"),
    ], 12),
    ("Prompt tokens not computed (per second)", "short", [
        ("cache hits", f"sum(rate(gptapi_prompt_cache_hit_tokens_total[{RATE}]))"),
        ("shared with a running request", f"sum(rate(gptapi_prompt_tokens_shared_total[{RATE}]))"),
        ("cache misses", f"sum(rate(gptapi_prompt_cache_miss_tokens_total[{RATE}]))"),
    ], 12),
]  # fmt: skip


def dashboard() -> dict[str, object]:
    panels = []
    x = y = 0
    for i, (title, unit, targets, width) in enumerate(PANELS, start=1):
        if x + width > 24:
            x, y = 0, y + 8
        panels.append({
            "id": i, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": x, "y": y, "w": width, "h": 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [
                {"refId": chr(65 + j), "expr": expr, "legendFormat": legend}
                for j, (legend, expr) in enumerate(targets)
            ],
        })  # fmt: skip
        x += width
    return {
        "uid": "gptapi", "title": "gptapi", "schemaVersion": 39, "version": 1,
        "tags": ["gptapi", "llm"], "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
        ]},
        "panels": panels,
    }  # fmt: skip


def queries(board: dict[str, object]) -> list[str]:
    """Every PromQL expression of a dashboard."""
    panels = board["panels"]
    assert isinstance(panels, list)
    return [t["expr"] for p in panels for t in p["targets"]]


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
