"""The comparison's tables: one row per engine and level, and for paired rounds each engine's
ratios to the reference engine round by round (min / median / max), plus their plot."""

from __future__ import annotations

from pathlib import Path

from bench.compare.levels import Level
from bench.stats import percentile, spread

HEADER = (
    "| engine | users | requests | errors | prompt tok/req | cached tok/req | output tok/s | "
    "latency p50 / p95 (s) | TTFT p50 / p95 (s) | inter-token p50 / p95 (s) | peak RSS MiB | "
    "peak anon MiB | peak file MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)
# Metrics compared round by round: (Level field, label in tables and plots).
PAIRED = (
    ("tok_per_s", "tok/s"),
    ("latency_p95_s", "p95 latency"),
    ("latency_p50_s", "p50 latency"),
    ("ttft_p50_s", "p50 TTFT"),
    ("itl_p95_s", "p95 inter-token"),
)


def _pair(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or b is None:
        return "n/a"
    return f"{a:.{digits}f} / {b:.{digits}f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_row(name: str, lv: Level) -> str:
    return (
        f"| {name} | {lv.users} | {lv.requests} | {lv.errors} | {lv.prompt_tokens_mean:.1f} | "
        f"{lv.cached_tokens_mean:.1f} | {lv.tok_per_s:.1f} | "
        f"{_pair(lv.latency_p50_s, lv.latency_p95_s)} | {_pair(lv.ttft_p50_s, lv.ttft_p95_s)} | "
        f"{_pair(lv.itl_p50_s, lv.itl_p95_s, 3)} | "
        f"{lv.rss_mib:.0f} | {lv.rss_anon_mib:.0f} | {lv.rss_file_mib:.0f} |"
    )


def ratios(mine: list[Level], ref: list[Level], metric: str) -> list[float]:
    """Round by round, this engine's ``metric`` over the reference's (rounds where either has
    none, e.g. no TTFT, left out)."""
    out = []
    for a, b in zip(mine, ref, strict=True):
        x, y = getattr(a, metric), getattr(b, metric)
        if x is not None and y:
            out.append(x / y)
    return out


def _spread(values: list[float]) -> str:
    s = spread(values)
    return "n/a" if s is None else f"{s[0]:.2f} / {s[1]:.2f} / {s[2]:.2f}"


def _median(levels: list[Level], metric: str) -> float | None:
    return percentile([v for lv in levels if (v := getattr(lv, metric)) is not None], 0.5)


def paired_summary(results: dict[str, list[Level]], reference: str) -> list[str]:
    """Per level: each engine's median over the rounds, and its metrics as ratios to the
    reference engine's in the same round (min / median / max)."""
    lines = [
        f"Paired with `{reference}` (same round, same prompts):",
        "",
        "| engine | users | rounds | median tok/s | tok/s ratio min / median / max | "
        "median p95 latency (s) | p95 ratio min / median / max | "
        "p50 latency ratio min / median / max | median p50 TTFT (s) | "
        "p50 TTFT ratio min / median / max | median p95 inter-token (s) | "
        "p95 inter-token ratio min / median / max |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, levels in results.items():
        for users in dict.fromkeys(lv.users for lv in levels):
            mine = [lv for lv in levels if lv.users == users]
            ref = [lv for lv in results[reference] if lv.users == users]
            r = {metric: _spread(ratios(mine, ref, metric)) for metric, _ in PAIRED}
            lines.append(
                f"| {name} | {users} | {len(mine)} | {_num(_median(mine, 'tok_per_s'))} | "
                f"{r['tok_per_s']} | {_num(_median(mine, 'latency_p95_s'))} | "
                f"{r['latency_p95_s']} | {r['latency_p50_s']} | "
                f"{_num(_median(mine, 'ttft_p50_s'))} | {r['ttft_p50_s']} | "
                f"{_num(_median(mine, 'itl_p95_s'), 3)} | {r['itl_p95_s']} |"
            )
    return lines


def plot_paired(
    out: Path, title: str, results: dict[str, list[Level]], reference: str
) -> list[Path]:
    """One ratios plot per user level (bench.plots.plot_ratios)."""
    from bench.plots import plot_ratios

    written = []
    for users in dict.fromkeys(lv.users for lv in results[reference]):
        per_engine: dict[str, dict[str, list[float]]] = {}
        for name, levels in results.items():
            mine = [lv for lv in levels if lv.users == users]
            ref = [lv for lv in results[reference] if lv.users == users]
            per_engine[name] = {
                label: values for metric, label in PAIRED if (values := ratios(mine, ref, metric))
            }
        path = out / f"ratios-{users}-users.png"
        written.append(plot_ratios(path, f"{title}, {users} users", per_engine, reference))
    return written
