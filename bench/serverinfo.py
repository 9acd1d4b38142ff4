"""What a run was measured against: the server's settings (read from its process environment,
with gptapi's defaults for what it does not set), the model file and the commit of the code."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import psutil

import gptapi
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
    values = {k.removeprefix("GPTAPI_").lower(): v for k, v in env.items()}
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
