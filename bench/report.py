"""What a run leaves behind: output.txt (a header saying what was measured, one line per request,
a summary per user level), result.json with every raw record and memory sample, and report.md
with the plots. Everything but result.json can be rewritten from it (``gptapi-bench report``)."""

from __future__ import annotations

import itertools
import json
import os
import platform
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.kvshape import KvShape, kv_shape
from bench.load import MIB, Level, LoadConfig, LoadRun, RequestResult
from bench.plots import plot_run
from bench.procs import MemorySample
from bench.stats import percentile

# Defined once, quoted by every table that shows growth.
GROWTH_DEFINITION = (
    "RSS growth from one user level to the next = the server's peak RSS during the higher level "
    "minus its peak RSS during the lower one (same server process, levels run in order), and per "
    "added user that difference divided by the users added; within a level, peak minus the "
    "level's first sample."
)
KV_DEFINITION = (
    "kv = the request's own cells in the KV buffer (prompt + completion tokens x KV bytes per "
    "token from the model's shapes; sliding-window layers hold at most their window): its share "
    "of memory allocated at start-up, not new memory"
)


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


def _stats(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else None,
    }


_REFUSALS = ("rate_limited", "server_busy", "stream_error:deadline_unmeetable")


def summarize(
    results: list[RequestResult], samples: list[MemorySample], wall_s: float
) -> dict[str, Any]:
    ok = [r for r in results if r.error_kind is None]
    gaps = [g for r in ok for g in r.inter_token_s]
    out_tokens = sum(r.completion_tokens or 0 for r in ok)
    queues = [s["queue_ms"] / 1000 for r in ok if (s := r.server) and s.get("queue_ms") is not None]
    # Refused at once (a limit, a full queue, the deadline forecast): no work was spent on
    # them. Goodput: of the requests the server took on, the share that finished in time.
    refused = [r for r in results if (r.error_kind or "").startswith(_REFUSALS)]
    accepted = len(results) - len(refused)
    forecast = [
        r.latency_s * 1000 / s["forecast_ms"]
        for r in ok
        if (s := r.server) and s.get("forecast_ms")
    ]
    summary: dict[str, Any] = {
        "requests": len(results),
        "ok": len(ok),
        "errors": dict(Counter(r.error_kind for r in results if r.error_kind)),
        "refused": len(refused),
        # Refusals after a wait (a queued request the deadline forecast dropped) are not
        # "at once": counted apart, by the client's clock.
        "refused_within_1s": sum(1 for r in refused if r.latency_s < 1.0),
        "refusal_latency_s": _stats([r.latency_s for r in refused]) if refused else None,
        "goodput": len(ok) / accepted if accepted else None,
        "forecast_ratio": _stats(forecast) if forecast else None,
        "wall_s": wall_s,
        "requests_per_s": len(ok) / wall_s if wall_s else None,
        "output_tokens": out_tokens,
        "output_tokens_per_s": out_tokens / wall_s if wall_s else None,
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in ok),
        "cached_tokens": sum((r.server or {}).get("cached_tokens") or 0 for r in ok),
        "latency_s": _stats([r.latency_s for r in ok]),
        "ttft_s": _stats([r.ttft_s for r in ok if r.ttft_s is not None]),
        "queue_s": _stats(queues) if queues else None,
        "inter_token_s": _stats(gaps) if gaps else None,
    }
    if samples:
        summary["memory"] = {
            "processes": samples[-1].processes,
            "rss_start": samples[0].rss,
            "rss_peak": max(s.rss for s in samples),
            "rss_end": samples[-1].rss,
            "anon_start": samples[0].anon,
            "anon_peak": max(s.anon for s in samples),
            "file_peak": max(s.file for s in samples),
            "pss_peak": max((s.pss or 0) for s in samples) or None,
        }
    return summary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}ms"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def request_line(r: RequestResult, kv: KvShape | None) -> str:
    status = str(r.status) if r.error_kind is None else f"{r.status or '-'}:{r.error_kind}"
    server = r.server or {}
    start, end = server.get("memory_start") or {}, server.get("memory_end") or {}
    queue = server.get("queue_ms")
    tokens = (r.prompt_tokens or 0) + (r.completion_tokens or 0)
    own_kv = f"{kv.request_bytes(tokens) / MIB:.2f}MiB" if kv and tokens else "-"
    return (
        f"t=+{r.start_s:7.1f}s user={r.user:<3} task={r.task:<9} input={r.input_id} "
        f"status={status} queue={_ms(None if queue is None else queue / 1000)} "
        f"ttft={_ms(r.ttft_s)} latency={r.latency_s * 1000:.0f}ms "
        f"tokens={r.prompt_tokens or 0}+{r.completion_tokens or 0} "
        f"cached={server.get('cached_tokens', '-')} "
        f"rss={_mib(start.get('rss_bytes'))}->{_mib(end.get('rss_bytes'))}MiB "
        f"pss={_mib(start.get('pss_bytes'))}->{_mib(end.get('pss_bytes'))}MiB kv={own_kv}"
    )


def _accounting(summary: dict[str, Any]) -> str:
    """Refused at once vs taken on, and what the taken-on requests came to."""
    goodput = summary.get("goodput")
    line = f"refused: {summary.get('refused', 0)}"
    if summary.get("refusal_latency_s"):
        line += (
            f" ({summary.get('refused_within_1s', 0)} within 1 s, slowest "
            f"{_ms(summary['refusal_latency_s']['max'])})"
        )
    line += f"; goodput {'-' if goodput is None else f'{goodput:.2f}'} (ok / accepted)"
    ratio = summary.get("forecast_ratio")
    if ratio:
        line += (
            f"; latency / forecast p50={ratio['p50']:.2f} p95={ratio['p95']:.2f} "
            f"max={ratio['max']:.2f}"
        )
    return line


def summary_lines(summary: dict[str, Any]) -> list[str]:
    lat, ttft = summary["latency_s"], summary["ttft_s"]
    lines = [
        f"requests: {summary['requests']} (ok {summary['ok']})",
        f"errors by kind: {summary['errors'] or 'none'}",
        _accounting(summary),
        "latency: " + " ".join(f"{k}={_ms(v)}" for k, v in lat.items()),
        "ttft: " + " ".join(f"{k}={_ms(v)}" for k, v in ttft.items()),
    ]
    for key, name in (("queue_s", "queue (server)"), ("inter_token_s", "inter-token")):
        if summary.get(key):
            lines.append(f"{name}: " + " ".join(f"{k}={_ms(v)}" for k, v in summary[key].items()))
    lines += [
        f"wall time: {summary['wall_s']:.1f}s",
        f"requests/s: {summary['requests_per_s']:.3f}",
        f"output tokens/s: {summary['output_tokens_per_s']:.2f}",
        f"prompt tokens: {summary.get('prompt_tokens', '-')} "
        f"(of them not computed, from the prompt cache or shared: "
        f"{summary.get('cached_tokens', '-')})",
    ]
    mem = summary.get("memory")
    if not mem:
        return [*lines, "server RAM: not sampled (server not local or pid not found)"]
    growth = mem["rss_peak"] - mem["rss_start"]
    return [
        *lines,
        f"server RAM (RSS over {mem['processes']} process(es)): first sample "
        f"{_mib(mem['rss_start'])} MiB, peak {_mib(mem['rss_peak'])} MiB, end "
        f"{_mib(mem['rss_end'])} MiB; growth within this level {growth / MIB:+.1f} MiB",
        f"anonymous: first sample {_mib(mem.get('anon_start'))} MiB, peak "
        f"{_mib(mem['anon_peak'])} MiB; file-backed peak {_mib(mem['file_peak'])} MiB"
        + (f"; peak PSS {_mib(mem['pss_peak'])} MiB" if mem.get("pss_peak") else ""),
    ]


def growth_lines(levels: list[Level]) -> list[str]:
    lines = ["# RAM growth between levels", f"# {GROWTH_DEFINITION}"]
    measured = [lv for lv in levels if lv.summary.get("memory")]
    for low, high in itertools.pairwise(measured):
        diff = high.summary["memory"]["rss_peak"] - low.summary["memory"]["rss_peak"]
        added = high.users - low.users
        lines.append(
            f"{low.users} -> {high.users} users: {diff / MIB:+.1f} MiB"
            + (f" ({diff / MIB / added:+.2f} MiB per added user)" if added > 0 else "")
        )
    return lines if len(measured) > 1 else []


def write_output_txt(path: Path, header: dict[str, Any], levels: list[Level]) -> None:
    kv = _kv_from_header(header)
    lines = ["# gptapi stress test", *(f"# {k}: {v}" for k, v in header.items()), ""]
    lines += [
        "# one line per request, in start order: t = start offset from the level's start; "
        "queue (server) = time waiting for a slot; ttft and latency measured by the client "
        "(ttft from the server's timing when not streamed); tokens = prompt+completion; "
        "cached = prompt tokens not computed; rss/pss = the server process's memory when the "
        "request started -> when it ended (PSS as of the server's last rollup reading)",
        f"# {KV_DEFINITION}",
    ]
    for level in levels:
        lines += ["", f"## {level.users} users x {level.requests_per_user} requests", ""]
        lines += [request_line(r, kv) for r in sorted(level.results, key=lambda r: r.start_s)]
        lines += ["", f"# summary, {level.users} users", *summary_lines(level.summary)]
    if growth := growth_lines(levels):
        lines += ["", *growth]
    path.write_text("\n".join(lines) + "\n")


def _kv_from_header(header: dict[str, Any]) -> KvShape | None:
    model = header.get("model file")
    kv_type = str(header.get("KV cache", "f16")).split(",")[0]
    if not model or model == "unknown" or not Path(model).exists():
        return None
    try:
        return kv_shape(Path(model), kv_type)
    except (KeyError, ValueError, OSError):
        return None


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

    header: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": known("commit"),
        "machine": machine(),
        "model": model_label(server),
        "model file": known("model_path"),
        "configuration": server.get("configuration", "as started"),
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
    if server.get("note"):
        header["note"] = server["note"]
    return header


def write_run(out: Path, run: LoadRun, server: dict[str, Any], wall_s: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(run.results, run.samples, wall_s)
    header = run_header(run.config, server)
    raw = {
        "header": header,
        "server": server,
        "config": asdict(run.config),
        "summary": summary,
        "requests": [asdict(r) for r in run.results],
        "memory_samples": [asdict(s) for s in run.samples],
    }
    (out / "result.json").write_text(json.dumps(raw, indent=1, default=str))
    render(out)
    return {"header": header, "summary": summary}


def load_level(run_dir: Path) -> tuple[dict[str, Any], Level]:
    """A run folder's header and level, from its result.json."""
    raw = json.loads((run_dir / "result.json").read_text())
    header = raw["header"]
    header.setdefault("configuration", run_dir.parent.name)
    results = [RequestResult(**_result_fields(r)) for r in raw["requests"]]
    samples = [MemorySample(**s) for s in raw["memory_samples"]]
    summary = summarize(results, samples, raw["summary"]["wall_s"])
    return header, Level(
        int(header["users"]), header["requests per user"], results, samples, summary
    )


# How a request that got its 200 may end in the server's log, as a success.
_ANSWERED = ("stop", "length", "tool_calls")


def _result_fields(record: dict[str, Any]) -> dict[str, Any]:
    # Older files (before 2026-12-02) kept only the server's memory_end.
    if "server_memory" in record:
        memory = record.pop("server_memory")
        record["server"] = {"memory_end": memory} if memory else None
    # Runs before 2026-12-07 counted a stream that ended in an error event as answered; the
    # server's own end reason tells.
    end = (record.get("server") or {}).get("end_reason")
    answered = end is None or end in _ANSWERED
    if record.get("error_kind") is None and record.get("status") == 200 and not answered:
        record["error_kind"] = f"stream_error:{end}"
    return record


def render(run_dir: Path) -> None:
    """Rewrite output.txt, the plots and report.md of one run folder from its result.json."""
    header, level = load_level(run_dir)
    write_output_txt(run_dir / "output.txt", header, [level])
    plots = plot_run(run_dir, header, level)
    lines = [f"# Stress test: {level.users} users", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", "```", *summary_lines(level.summary), "```", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")


def write_levels_output(out: Path, level_dirs: list[Path]) -> None:
    """One output.txt for several user levels of one server (a matrix configuration): the
    header of the first level without its per-level lines, every level, the growth between."""
    loaded = [load_level(d) for d in level_dirs]
    if not loaded:
        return
    header = {
        k: v for k, v in loaded[0][0].items() if k not in ("users", "requests per user", "date")
    }
    header = {"date": loaded[-1][0]["date"], **header}
    header["user levels"] = ", ".join(f"{lv.users} x {lv.requests_per_user}" for _, lv in loaded)
    write_output_txt(out / "output.txt", header, [lv for _, lv in loaded])
