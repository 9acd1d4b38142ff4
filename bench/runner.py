"""One load run against one server: its configuration from the command line, the run itself,
the server's log joined to the client's records, and the files written."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.corpus import Corpus, parse_mix
from bench.load import LoadConfig, LoadRun
from bench.report import write_run
from bench.serverinfo import describe_server, join_server_log, server_log_path


def parse_per_user(text: str) -> int | dict[int, int]:
    """``2`` (every level) or ``10:3,40:1`` (per user level; levels not listed send 2)."""
    if ":" not in text:
        return int(text)
    pairs = (part.split(":", 1) for part in text.split(","))
    return {int(users): int(n) for users, n in pairs}


def load_config(args: argparse.Namespace, base_url: str, api_key: str, users: int) -> LoadConfig:
    per_user = args.requests_per_user
    if isinstance(per_user, dict):
        per_user = per_user.get(users, 2)
    if per_user is None and args.duration is None:
        per_user = 2
    return LoadConfig(
        base_url=base_url,
        api_key=api_key,
        users=users,
        requests_per_user=per_user,
        duration_s=args.duration,
        mix=parse_mix(args.mix),
        max_tokens=args.max_tokens,
        rate=args.rate,
        stream=args.stream,
        timeout_s=args.timeout,
        time_cap_s=args.time_cap,
        api=args.api,
        json_schema=json.loads(args.json_schema.read_text()) if args.json_schema else None,
    )


def execute(
    config: LoadConfig,
    out: Path,
    *,
    pids: list[int],
    server_log: Path | None,
    note: str | None = None,
    label: str | None = None,
    corpus: Corpus | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    from tqdm import tqdm

    bar = tqdm(total=None, unit="req", disable=quiet, file=sys.stderr)

    def progress(done: int, expected: int) -> None:
        if expected and bar.total != expected:
            bar.total = expected
        bar.update(done - bar.n)

    # One corpus across the levels of one server: a level must not resend the inputs of the
    # one before it (the prompt cache would answer them).
    run = LoadRun(config, corpus or Corpus(), pids, on_progress=progress)
    started = time.perf_counter()
    asyncio.run(run.run())
    wall = time.perf_counter() - started
    bar.close()
    join_server_log(run.results, server_log_path(pids, server_log))
    info = describe_server(config.base_url, pids)
    if note:
        info["note"] = note
    if label:
        info["configuration"] = label
    return write_run(out, run, info, wall)


# Where a bench command writes when no --out names a folder: git-ignored, never docs/ (a run
# that is to be published is written there on purpose, e.g. --out docs/results/NAME).
RESULTS_DIR = Path("bench/results")


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def default_out() -> Path:
    return RESULTS_DIR / timestamp()
