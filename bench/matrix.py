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
from pathlib import Path
from typing import Any

from bench.corpus import Corpus
from bench.load import MIB
from bench.plots import plot_scaling
from bench.procs import find_server_pids, free_port, stop, wait_ready
from bench.report import GROWTH_DEFINITION, load_level, render, write_levels_output
from bench.runner import execute, load_config
from bench.serverenv import API_KEY, server_env


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


def config_env(args: argparse.Namespace, settings: dict[str, str], run_dir: Path) -> dict[str, str]:
    """A configuration's server settings: the bench's (bench.serverenv), its own over them, its
    log in the run folder. tracemalloc on: the stress test's RAM log has the Python heap too
    (the server's default is off, for its cost: docs/memory.md)."""
    return server_env(
        threads=args.threads,
        ctx=args.ctx,
        request_timeout_s=args.timeout,
        model=args.model,
        GPTAPI_LOG_DIR=str(run_dir / "server-logs"),
        GPTAPI_TRACEMALLOC="true",
        **settings,
    )


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
        env = {**os.environ, **config_env(args, env_extra, run_dir)}
        cmd = [sys.executable, "-m", "gptapi.cli", "serve", "--port", str(port), *cli_extra]
        with (run_dir / "server.log").open("wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # With several workers each must have loaded: ask a few times.
            workers = 2 if "--workers" in cli_extra else 1
            wait_ready(f"{base_url}/ready", proc, run_dir / "server.log", times=3 * workers)
            pids = find_server_pids(base_url, proc.pid)
            corpus = Corpus()  # levels continue where the previous one stopped
            for users in users_levels:
                config = load_config(args, base_url, API_KEY, users)
                print(f"[{name}] {users} users ...", file=sys.stderr, flush=True)
                result = execute(
                    config,
                    run_dir / f"users-{users}",
                    pids=pids,
                    server_log=run_dir / "server-logs",
                    note=args.note,
                    label=name,
                    corpus=corpus,
                )
                rows.append({"config": name, "users": users, **result})
        finally:
            stop(proc)
    write_matrix(out, rows, f"gptapi-bench {' '.join(sys.argv[1:])}")
    print(f"wrote {out}/matrix.md")
    return 0


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def rerender_matrix(out: Path) -> None:
    """Rewrite a matrix folder's tables, outputs and plots from its runs' result.json files."""
    rows = []
    for row in json.loads((out / "matrix.json").read_text()):
        level_dir = out / row["config"] / f"users-{row['users']}"
        render(level_dir)
        header, level = load_level(level_dir)
        rows.append({"config": row["config"], "users": row["users"], "header": header,
                     "summary": level.summary})  # fmt: skip
    old = (out / "matrix.md").read_text() if (out / "matrix.md").exists() else ""
    command = next(
        (line.split("`")[1] for line in old.splitlines() if line.startswith("- command: `")),
        "unknown",
    )
    write_matrix(out, rows, command)


def write_matrix(out: Path, rows: list[dict[str, Any]], command: str) -> None:
    header = (
        "| config | users | ok / requests | errors | output tok/s | req/s | latency p50 / p95 (s) "
        "| TTFT p50 / p95 (s) | peak RSS sum | peak PSS sum | peak anon | peak file "
        "| RSS growth from the previous level |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = ["# gptapi-bench matrix", ""]
    if rows:
        h = rows[0]["header"]
        keys = ("date", "commit", "machine", "model", "slots x context", "KV cache", "mix")
        lines += [f"- {k}: {h[k]}" for k in (*keys, "max_tokens") if k in h]
        if "note" in h:
            lines.append(f"- note: {h['note']}")
    lines += [f"- command: `{command}`", f"- {GROWTH_DEFINITION}"]
    lines += ["", header]
    by_config: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_config.setdefault(row["config"], []).append(row)
    for config_rows in by_config.values():
        previous: dict[str, Any] = {}
        previous_users = 0
        for row in config_rows:
            s = row["summary"]
            mem = s.get("memory") or {}
            growth = "-"
            if mem and previous:
                diff = mem["rss_peak"] - previous["rss_peak"]
                added = max(row["users"] - previous_users, 1)
                growth = f"{diff / MIB:+.0f} MiB ({diff / MIB / added:+.2f} per added user)"
            previous, previous_users = mem, row["users"]
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
    for name, config_rows in by_config.items():
        write_levels_output(out / name, [out / name / f"users-{r['users']}" for r in config_rows])
    if rows:
        plot_scaling(out, rows[0]["header"], by_config)
