"""What a run leaves behind: output.txt (one line per request + summary), a JSON file with every
raw record and memory sample, and a Markdown report with PNG plots."""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import MIB, LoadConfig, LoadRun, MemorySample, RequestResult


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, {mem_kib / 2**20:.0f} GiB RAM, "
        f"{platform.platform()}"
    )


def summarize(run: LoadRun, wall_s: float) -> dict[str, Any]:
    results = run.results
    ok = [r for r in results if r.error_kind is None]
    latencies = [r.latency_s for r in ok]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    gaps = [g for r in ok for g in r.inter_token_s]
    out_tokens = sum(r.completion_tokens or 0 for r in ok)
    samples = run.samples
    rss = [s.rss for s in samples]

    def stats(values: list[float]) -> dict[str, float | None]:
        return {
            "p50": percentile(values, 0.5),
            "p90": percentile(values, 0.9),
            "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99),
            "max": max(values) if values else None,
        }

    summary: dict[str, Any] = {
        "requests": len(results),
        "ok": len(ok),
        "errors": dict(Counter(r.error_kind for r in results if r.error_kind)),
        "wall_s": wall_s,
        "requests_per_s": len(ok) / wall_s if wall_s else None,
        "output_tokens": out_tokens,
        "output_tokens_per_s": out_tokens / wall_s if wall_s else None,
        "latency_s": stats(latencies),
        "ttft_s": stats(ttfts),
        "inter_token_s": stats(gaps) if gaps else None,
    }
    if samples:
        peak = max(samples, key=lambda s: s.rss)
        summary["memory"] = {
            "processes": samples[-1].processes,
            "rss_start": samples[0].rss,
            "rss_peak": peak.rss,
            "rss_end": samples[-1].rss,
            "anon_peak": max(s.anon for s in samples),
            "file_peak": max(s.file for s in samples),
            "pss_peak": max((s.pss or 0) for s in samples) or None,
            "rss_growth_per_user": (max(rss) - rss[0]) / max(run.config.users, 1),
        }
    return summary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}ms"


def _request_ram(r: RequestResult, samples: list[MemorySample]) -> str:
    end_memory = (r.server or {}).get("memory_end") or {}
    if end_memory.get("rss_bytes") is not None:
        rss = end_memory["rss_bytes"] / MIB
        anon = (end_memory.get("rss_anon_bytes") or 0) / MIB
        return f"rss={rss:.1f}MiB anon={anon:.1f}MiB"
    end = r.start_s + r.latency_s
    near = min(samples, key=lambda s: abs(s.t_s - end), default=None)
    if near is None:
        return "rss=n/a"
    return f"rss={near.rss / MIB:.1f}MiB anon={near.anon / MIB:.1f}MiB (sampled)"


def write_output_txt(
    path: Path, run: LoadRun, header: dict[str, Any], summary: dict[str, Any]
) -> None:
    lines = ["# gptapi stress test", *(f"# {k}: {v}" for k, v in header.items()), ""]
    lines.append("# user task input status latency ttft tokens(prompt+completion) ram")
    for r in sorted(run.results, key=lambda r: r.start_s):
        status = str(r.status) if r.error_kind is None else f"{r.status or '-'}:{r.error_kind}"
        tokens = f"{r.prompt_tokens or 0}+{r.completion_tokens or 0}"
        lines.append(
            f"user={r.user:<3} task={r.task:<9} input={r.input_id} status={status} "
            f"latency={r.latency_s * 1000:.0f}ms ttft={_ms(r.ttft_s)} tokens={tokens} "
            f"{_request_ram(r, run.samples)}"
        )
    lat, ttft = summary["latency_s"], summary["ttft_s"]
    lines += [
        "",
        "# summary",
        f"requests: {summary['requests']} (ok {summary['ok']})",
        f"errors by kind: {summary['errors'] or 'none'}",
        "latency: " + " ".join(f"{k}={_ms(v)}" for k, v in lat.items()),
        "ttft: " + " ".join(f"{k}={_ms(v)}" for k, v in ttft.items()),
    ]
    if summary.get("inter_token_s"):
        lines.append(
            "inter-token: " + " ".join(f"{k}={_ms(v)}" for k, v in summary["inter_token_s"].items())
        )
    lines += [
        f"wall time: {summary['wall_s']:.1f}s",
        f"requests/s: {summary['requests_per_s']:.2f}",
        f"output tokens/s: {summary['output_tokens_per_s']:.1f}",
    ]
    mem = summary.get("memory")
    if mem:
        mib = {
            k: v / MIB for k, v in mem.items() if isinstance(v, int | float) and k != "processes"
        }
        lines += [
            f"server RAM (RSS over {mem['processes']} process(es)): start {mib['rss_start']:.1f} "
            f"MiB, peak {mib['rss_peak']:.1f} MiB, end {mib['rss_end']:.1f} MiB",
            f"peak anon {mib['anon_peak']:.1f} MiB, peak file-backed {mib['file_peak']:.1f} MiB"
            + (f", peak PSS {mib['pss_peak']:.1f} MiB" if mem["pss_peak"] else ""),
            f"RAM growth per added user: {mem['rss_growth_per_user'] / MIB:.2f} MiB",
        ]
    else:
        lines.append("server RAM: not sampled (server not local or pid not found)")
    path.write_text("\n".join(lines) + "\n")


def plot_run(out: Path, run: LoadRun) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    ok = [r for r in run.results if r.error_kind is None]
    tasks = sorted({r.task for r in ok})
    if tasks:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.boxplot([[r.latency_s for r in ok if r.task == t] for t in tasks], tick_labels=tasks)
        ax.set_ylabel("end-to-end latency (s)")
        ax.set_title(f"Latency per task, {run.config.users} users")
        fig.tight_layout()
        written.append(out / "latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    if run.samples:
        fig, ax = plt.subplots(figsize=(8, 4))
        t = [s.t_s for s in run.samples]
        ax.plot(t, [s.rss / MIB for s in run.samples], label="RSS")
        ax.plot(t, [s.anon / MIB for s in run.samples], label="anonymous (KV, buffers, heap)")
        ax.plot(t, [s.file / MIB for s in run.samples], label="file-backed (mmap'd weights)")
        if any(s.pss for s in run.samples):
            ax.plot(t, [(s.pss or 0) / MIB for s in run.samples], label="PSS", linestyle="--")
        starts = [r.start_s for r in run.results]
        ax.plot(starts, [0] * len(starts), "|", color="gray", markersize=10, label="request starts")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("MiB")
        ax.set_title(f"Server memory, {run.config.users} users")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "memory.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


TWIN_NOTE = (
    "PERFORMANCE TWIN of Gemma 3 4B it Q8_0 (random weights, real shapes and Q8_0 size: speed "
    "and memory are the real model's, the generated text is meaningless)"
)


def model_label(server: dict[str, Any]) -> str:
    """The model's name as the server reports it, its file, and the twin said plainly."""
    path = server.get("model_path") or ""
    name = str(server.get("model") or "unknown")
    label = f"{name} ({Path(path).name})" if path else name
    return f"{label}: {TWIN_NOTE}" if "twin" in label.lower() else label


def run_header(config: LoadConfig, server: dict[str, Any]) -> dict[str, Any]:
    """Everything a reader needs to tell what was measured, in the order they look for it."""

    def known(key: str) -> Any:
        return server.get(key, "unknown")

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": known("commit"),
        "machine": machine(),
        "model": model_label(server),
        "model file": known("model_path"),
        "engine": known("engine"),
        "slots x context": f"{known('slots')} x {known('n_ctx')} tokens",
        "threads": known("n_threads"),
        "KV cache": f"{known('kv_cache_type')}, unified={known('kv_unified')}",
        "prompt cache": f"{known('prompt_cache_mb')} MiB budget",
        "prefix sharing": known("share_prefixes"),
        "mmap": known("use_mmap"),
        "server processes": known("processes"),
        "users": config.users,
        "requests per user": config.requests_per_user or f"for {config.duration_s}s",
        "arrivals": f"Poisson {config.rate}/s" if config.rate else "closed loop",
        "mix": ",".join(f"{k}={v:g}" for k, v in config.mix.items()),
        "max_tokens": config.max_tokens,
        "stream": config.stream,
        "api": config.api,
        "base url": config.base_url,
    }


def write_run(
    out: Path, run: LoadRun, config: LoadConfig, server: dict[str, Any], wall_s: float
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(run, wall_s)
    header = run_header(config, server)
    if server.get("note"):
        header["note"] = server["note"]
    write_output_txt(out / "output.txt", run, header, summary)
    raw = {
        "header": header,
        "summary": summary,
        "requests": [asdict(r) for r in run.results],
        "memory_samples": [asdict(s) for s in run.samples],
    }
    (out / "result.json").write_text(json.dumps(raw, indent=1, default=str))
    plots = plot_run(out, run)
    lines = [f"# Stress test: {config.users} users", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [
        "",
        "```",
        *(out / "output.txt").read_text().split("# summary\n", 1)[-1].splitlines(),
        "```",
        "",
    ]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return {"header": header, "summary": summary}
