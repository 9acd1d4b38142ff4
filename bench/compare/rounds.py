"""How the servers of a comparison take turns: one after another, or all up at once and
alternated round by round (paired), the idle ones frozen."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.compare.levels import Level, run_level
from bench.compare.tables import format_row
from bench.compare.targets import READY_PATH, Target
from bench.procs import free_port, stop, wait_ready


@dataclass
class Started:
    target: Target
    proc: subprocess.Popen[bytes]
    base_url: str


def start_target(target: Target, new_tokens: int, logs: Path) -> Started:
    """Start a server, wait until it is ready and warm it up (weights faulted in, graphs built)
    so nothing after this times a cold start."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{target.name}.log"
    cmd = [c.replace("{port}", str(port)) for c in target.command]
    env = {**os.environ, "GPTAPI_LOG_DIR": str(logs / f"{target.name}-jsonl"), **target.env}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    started = Started(target, proc, f"http://127.0.0.1:{port}")
    try:
        wait_ready(started.base_url + READY_PATH[target.kind], proc, log)
        asyncio.run(run_level(started.base_url, target, proc.pid, 1, 1, new_tokens, 10_000))
    except BaseException:
        stop(proc)
        raise
    return started


def _level(started: Started, users: int, per_user: int, new_tokens: int, index: int) -> Level:
    level, _ = asyncio.run(
        run_level(
            started.base_url,
            started.target,
            started.proc.pid,
            users,
            per_user,
            new_tokens,
            index,
        )
    )
    return level


def run_target(
    target: Target, users_levels: list[int], per_user: dict[int, int], new_tokens: int, logs: Path
) -> list[Level]:
    started = start_target(target, new_tokens, logs)
    levels: list[Level] = []
    try:
        index = 0
        for users in users_levels:
            levels.append(_level(started, users, per_user[users], new_tokens, index))
            index += users * per_user[users]
            print(format_row(target.name, levels[-1]), flush=True)
    finally:
        stop(started.proc)
    return levels


def run_interleaved(
    chosen: list[Target],
    users_levels: list[int],
    per_user: dict[int, int],
    new_tokens: int,
    rounds: int,
    logs: Path,
) -> dict[str, list[Level]]:
    """All servers up at once, each level run ``rounds`` times per server, alternating
    A B, B A, ... so the VM's minute-to-minute speed drift hits every server alike. The servers
    not being measured are frozen (SIGSTOP): an idle server's timers and samplers would
    otherwise take CPU from the one being measured."""
    running: list[Started] = []
    results: dict[str, list[Level]] = {t.name: [] for t in chosen}
    try:
        for target in chosen:
            running.append(start_target(target, new_tokens, logs))
            running[-1].proc.send_signal(signal.SIGSTOP)
        index = 0
        for users in users_levels:
            for r in range(rounds):
                for started in running if r % 2 == 0 else running[::-1]:
                    started.proc.send_signal(signal.SIGCONT)
                    time.sleep(1)  # let the resumed server run the timers it missed first
                    level = _level(started, users, per_user[users], new_tokens, index)
                    started.proc.send_signal(signal.SIGSTOP)
                    results[started.target.name].append(level)
                    print(format_row(f"{started.target.name} #{r + 1}", level), flush=True)
                # Every server gets the same distinct prompts in a round; rounds differ.
                index += users * per_user[users]
    finally:
        for started in running:
            started.proc.send_signal(signal.SIGCONT)
            stop(started.proc)
    return results
