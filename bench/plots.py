"""Plots a person reads at a glance: memory as change from the start with the absolute start
in the title, titles naming model and configuration, ticks where requests started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.load import MIB, Level
from bench.stats import percentile


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def short_model(header: dict[str, Any]) -> str:
    model = str(header.get("model", "unknown model"))
    if "twin" in model.lower():
        return "heavy-model twin (Gemma 3 4B Q8_0 shapes, random weights)"
    return model.split(" (")[0]


def config_label(header: dict[str, Any]) -> str:
    parts = [
        str(header.get("configuration", "")),
        f"{header.get('slots x context', '?').replace(' tokens', '')} slots x ctx",
        f"KV {str(header.get('KV cache', '?')).split(',')[0]}",
    ]
    return ", ".join(p for p in parts if p)


def plot_run(out: Path, header: dict[str, Any], level: Level) -> list[Path]:
    plt = _pyplot()
    written: list[Path] = []
    title = f"{short_model(header)}\n{config_label(header)}, {level.users} users"
    ok = [r for r in level.results if r.error_kind is None]
    tasks = sorted({r.task for r in ok})
    if tasks:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.boxplot([[r.latency_s for r in ok if r.task == t] for t in tasks], tick_labels=tasks)
        ax.set_ylabel("end-to-end latency (s)")
        ax.set_title(f"Latency per task: {title}", fontsize=9)
        fig.tight_layout()
        written.append(out / "latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    samples = level.samples
    if samples:
        first = samples[0]
        fig, ax = plt.subplots(figsize=(8, 4.4))
        t = [s.t_s for s in samples]
        ax.plot(t, [(s.rss - first.rss) / MIB for s in samples], label="RSS")
        ax.plot(t, [(s.anon - first.anon) / MIB for s in samples], label="anonymous (KV, heap)")
        ax.plot(t, [(s.file - first.file) / MIB for s in samples], label="file-backed (weights)")
        with_pss = [s for s in samples if s.pss]
        if with_pss:
            base = with_pss[0].pss or 0
            ax.plot(
                [s.t_s for s in with_pss],
                [((s.pss or 0) - base) / MIB for s in with_pss],
                "--",
                label="PSS",
            )
        low, high = ax.get_ylim()
        starts = [r.start_s for r in level.results]
        ax.plot(
            starts, [low] * len(starts), "|", color="gray", markersize=12, label="a request starts"
        )
        ax.set_ylim(low - (high - low) * 0.05, high)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xlabel("time since the level started (s)")
        ax.set_ylabel("change since the first sample (MiB)")
        ax.set_title(
            f"Server memory: {title}\nat the first sample: RSS {first.rss / MIB:.0f} MiB "
            f"(anonymous {first.anon / MIB:.0f}, file-backed {first.file / MIB:.0f})",
            fontsize=9,
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "memory.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def plot_scaling(
    out: Path, header: dict[str, Any], series: dict[str, list[dict[str, Any]]]
) -> None:
    """Throughput and p95 latency against users, one line per configuration."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    for name, rows in series.items():
        users = [row["users"] for row in rows]
        ax1.plot(users, [row["summary"]["output_tokens_per_s"] for row in rows], "o-", label=name)
        ax2.plot(users, [row["summary"]["latency_s"]["p95"] or 0 for row in rows], "o-", label=name)
    ax1.set(xlabel="concurrent users", ylabel="output tokens/s", title="Throughput")
    ax2.set(xlabel="concurrent users", ylabel="p95 latency (s)", title="p95 latency")
    ax1.legend(fontsize=8)
    fig.suptitle(
        f"{short_model(header)}, {header.get('slots x context', '?')} per configuration "
        f"(workers2: half the slots per worker)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)


def plot_ratios(
    path: Path, title: str, ratios: dict[str, dict[str, list[float]]], reference: str
) -> Path:
    """Per engine and metric: the median of the per-round ratios to the reference, with the
    rounds' min-max spread as whiskers and every round as a dot."""
    plt = _pyplot()
    metrics = sorted({m for by_metric in ratios.values() for m, v in by_metric.items() if v})
    engines = [e for e in ratios if e != reference]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) * max(len(engines), 1)), 4.4))
    width = 0.8 / max(len(engines), 1)
    for k, engine in enumerate(engines):
        labelled = False
        for m, metric in enumerate(metrics):
            values = ratios[engine].get(metric) or []
            if not values:
                continue
            x = m + k * width
            median = percentile(values, 0.5) or 0.0
            ax.bar(x, median, width * 0.9, color=f"C{k}", label=None if labelled else engine)
            labelled = True
            ax.vlines(x, min(values), max(values), color="black", linewidth=1)
            ax.plot([x] * len(values), values, ".", color="black", markersize=4)
    ax.axhline(1, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xticks([m + width * (len(engines) - 1) / 2 for m in range(len(metrics))], metrics)
    ax.set_ylabel(f"ratio to {reference} (same round)")
    ax.set_title(f"{title}\nbar: median over rounds; line: min-max; dots: each round", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
