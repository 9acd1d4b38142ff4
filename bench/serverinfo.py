"""What a run was measured against and what the server saw: its settings (read from its process
environment, with gptapi's defaults for what it does not set), the model file, the commit of the
code, and the server's own log line for each request."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

import gptapi
from bench.load import RequestResult
from gptapi.config import Settings


def code_commit() -> str:
    """The commit of the gptapi source being run, with "-dirty" if the tree has changes."""
    root = Path(gptapi.__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def server_environment(pids: list[int]) -> dict[str, str]:
    """GPTAPI_* variables of the server's first process that can be read (local servers)."""
    for pid in pids:
        try:
            env = psutil.Process(pid).environ()
        except psutil.Error:
            continue
        return {k: v for k, v in env.items() if k.startswith("GPTAPI_")}
    return {}


def server_settings(pids: list[int]) -> Settings | None:
    env = server_environment(pids)
    if not env and not pids:
        return None
    values: dict[str, Any] = {k.removeprefix("GPTAPI_").lower(): v for k, v in env.items()}
    try:
        return Settings(**values)
    except ValueError:
        return None


def model_path(settings: Settings | None) -> Path | None:
    if settings is None:
        return None
    if settings.model_path is not None:
        return settings.model_path
    from gptapi.modelfile import embedded_model_path

    return embedded_model_path()


def describe_server(base_url: str, pids: list[int]) -> dict[str, Any]:
    """/ready's answer plus the settings that decide speed and memory, for every header."""
    try:
        ready = httpx.get(f"{base_url}/ready", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        ready = {}
    info: dict[str, Any] = dict(ready) if isinstance(ready, dict) else {}
    info["commit"] = code_commit()
    settings = server_settings(pids)
    if settings is not None:
        path = model_path(settings)
        info |= {
            "model_path": str(path) if path else None,
            "slots": settings.slots,
            "n_ctx": settings.n_ctx,
            "n_threads": settings.n_threads,
            "kv_cache_type": settings.kv_cache_type,
            "kv_unified": settings.kv_unified,
            "prompt_cache_mb": settings.prompt_cache_mb,
            "share_prefixes": settings.share_prefixes,
            "use_mmap": settings.use_mmap,
            "processes": len(pids),
        }
    return info


def server_log_path(pids: list[int], explicit: Path | None) -> Path | None:
    """The server's requests.jsonl: given, or found from the server's environment and cwd."""
    if explicit is not None:
        return explicit / "requests.jsonl" if explicit.is_dir() else explicit
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            log_dir = Path(proc.environ().get("GPTAPI_LOG_DIR", "logs"))
            path = (
                log_dir if log_dir.is_absolute() else Path(proc.cwd()) / log_dir
            ) / "requests.jsonl"
        except (psutil.Error, OSError):
            continue
        if path.exists():
            return path
    return None


def join_server_log(
    results: list[RequestResult], log_path: Path | None, wait_s: float = 3.0
) -> int:
    """Attach the server's log line to each request, by request id. The server writes a line
    after the response is sent, from a background thread: wait briefly for the last."""
    if log_path is None:
        return 0
    wanted = {r.request_id for r in results if r.request_id}
    deadline = time.monotonic() + wait_s
    by_id: dict[str, dict[str, Any]] = {}
    while True:
        if log_path.exists():
            for line in log_path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("request_id") in wanted and entry.get("memory_end"):
                    entry.pop("text", None)
                    by_id[entry["request_id"]] = entry
        if len(by_id) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for r in results:
        if r.request_id in by_id:
            r.server = by_id[r.request_id]
    return len(by_id)
