"""``gptapi-bench matrix``: the same load against several server configurations, one server
process (or worker group) per configuration, each at every user level, then one table.

- batched: continuous batching in one process (the default engine)
- pool: one-slot contexts, as many as threads
- workers2: 2 uvicorn workers, each batched with half the slots and threads, both mapping the
  same model file (RSS sum vs PSS sum shows what mmap sharing saves)
- nommap: batched with the weights read into anonymous memory (GPTAPI_USE_MMAP=false)
- kvq8: batched with a q8_0 KV cache instead of f16 (GPTAPI_KV_CACHE_TYPE=q8_0)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.cli import execute, load_config
from bench.load import MIB, find_server_pids
from bench.procs import free_port, stop

API_KEY = "bench-matrix-key-0123456789"


def _configs(args: argparse.Namespace) -> dict[str, tuple[dict[str, str], list[str]]]:
    half = max(1, args.slots // 2)
    return {
        "batched": ({"GPTAPI_ENGINE": "batched", "GPTAPI_SLOTS": str(args.slots)}, []),
        "pool": ({"GPTAPI_ENGINE": "pool", "GPTAPI_SLOTS": str(args.threads)}, []),
        "workers2": ({"GPTAPI_ENGINE": "batched", "GPTAPI_SLOTS": str(half)}, ["--workers", "2"]),
        "nommap": (
            {
                "GPTAPI_ENGINE": "batched",
                "GPTAPI_SLOTS": str(args.slots),
                "GPTAPI_USE_MMAP": "false",
            },
            [],
        ),
        "kvq8": (
            {
                "GPTAPI_ENGINE": "batched",
                "GPTAPI_SLOTS": str(args.slots),
                "GPTAPI_KV_CACHE_TYPE": "q8_0",
            },
            [],
        ),
    }


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes], workers: int) -> None:
    deadline = time.monotonic() + 900
    ready = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=5).status_code == 200:
                ready += 1
                # With several workers, each must have loaded: ask a few times.
                if ready >= 3 * workers:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server not ready in 900 s")


def run_matrix(args: argparse.Namespace, out: Path) -> int:
    users_levels = [int(u) for u in args.users.split(",")]
    configs = _configs(args)
    chosen = [c.strip() for c in args.configs.split(",")]
    unknown = [c for c in chosen if c not in configs]
    if unknown:
        print(f"unknown configuration(s): {', '.join(unknown)}; known: {', '.join(configs)}")
        return 2
    rows: list[dict[str, Any]] = []
    for name in chosen:
        env_extra, cli_extra = configs[name]
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GPTAPI_API_KEYS": API_KEY,
            "GPTAPI_N_THREADS": str(args.threads),
            "GPTAPI_N_CTX": str(args.ctx),
            "GPTAPI_MAX_QUEUE": "10000",
            "GPTAPI_RATE_LIMIT": "1000000/minute",
            "GPTAPI_RATE_LIMIT_BURST": "1000000/second",
            "GPTAPI_RATE_LIMIT_UNAUTHENTICATED": "1000000/minute",
            "GPTAPI_TOKEN_RATE_LIMIT": "1000000000/minute",
            "GPTAPI_MAX_INFLIGHT_PER_KEY": "100000",
            "GPTAPI_REQUEST_TIMEOUT_S": str(args.timeout),
            "GPTAPI_LOG_DIR": str(run_dir / "server-logs"),
            **env_extra,
        }
        if args.model:
            env["GPTAPI_MODEL_PATH"] = str(args.model)
        cmd = [sys.executable, "-m", "gptapi.cli", "serve", "--port", str(port), *cli_extra]
        with (run_dir / "server.log").open("wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(base_url, proc, 2 if "--workers" in cli_extra else 1)
            pids = find_server_pids(base_url, proc.pid)
            for users in users_levels:
                config = load_config(args, base_url, API_KEY, users)
                print(f"[{name}] {users} users ...", file=sys.stderr, flush=True)
                result = execute(
                    config,
                    run_dir / f"users-{users}",
                    pids=pids,
                    server_log=run_dir / "server-logs",
                    note=args.note,
                )
                rows.append({"config": name, "users": users, **result})
        finally:
            stop(proc)
    write_matrix(out, rows, args)
    print(f"wrote {out}/matrix.md")
    return 0


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def write_matrix(out: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    header = (
        "| config | users | ok / requests | errors | output tok/s | req/s | latency p50 / p95 (s) "
        "| TTFT p50 / p95 (s) | peak RSS sum | peak PSS sum | peak anon | peak file "
        "| RSS growth low→high users |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = ["# gptapi-bench matrix", ""]
    if rows:
        h = rows[0]["header"]
        lines += [f"- {k}: {h[k]}" for k in ("date", "machine", "model", "mix", "max_tokens")]
        if "note" in h:
            lines.append(f"- note: {h['note']}")
    lines += [f"- command: `gptapi-bench {' '.join(sys.argv[1:])}`", "", header]
    by_config: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        by_config.setdefault(row["config"], {})[row["users"]] = row
    for row in rows:
        s = row["summary"]
        mem = s.get("memory") or {}
        levels = by_config[row["config"]]
        growth = "-"
        if row["users"] == max(levels) and len(levels) > 1:
            low = levels[min(levels)]["summary"].get("memory") or {}
            if mem and low:
                growth = f"{(mem['rss_peak'] - low['rss_peak']) / MIB:+.0f} MiB"
        lines.append(
            f"| {row['config']} | {row['users']} | {s['ok']} / {s['requests']} | "
            f"{sum(s['errors'].values())} | {s['output_tokens_per_s']:.1f} | "
            f"{s['requests_per_s']:.2f} | "
            f"{_fmt_s(s['latency_s']['p50'])} / {_fmt_s(s['latency_s']['p95'])} | "
            f"{_fmt_s(s['ttft_s']['p50'])} / {_fmt_s(s['ttft_s']['p95'])} | "
            + " | ".join(
                "-" if not mem.get(k) else f"{mem[k] / MIB:.0f} MiB"
                for k in ("rss_peak", "pss_peak", "anon_peak", "file_peak")
            )
            + f" | {growth} |"
        )
    (out / "matrix.md").write_text("\n".join(lines) + "\n")
    (out / "matrix.json").write_text(json.dumps(rows, indent=1, default=str))
    _plot_scaling(out, by_config)


def _plot_scaling(out: Path, by_config: dict[str, dict[int, dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, levels in by_config.items():
        users = sorted(levels)
        ax1.plot(
            users, [levels[u]["summary"]["output_tokens_per_s"] for u in users], "o-", label=name
        )
        ax2.plot(
            users, [levels[u]["summary"]["latency_s"]["p95"] or 0 for u in users], "o-", label=name
        )
    ax1.set(xlabel="users", ylabel="output tokens/s", title="Throughput vs users")
    ax2.set(xlabel="users", ylabel="p95 latency (s)", title="p95 latency vs users")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)
