"""The server processes a benchmark runs against: starting, waiting until ready, stopping, and
reading their memory from /proc (the one reader every bench tool uses)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], log: Path, *, times: int = 1, timeout_s: float = 900
) -> None:
    """Until ``url`` answers 200 ``times`` times (several workers: each must have loaded, so
    ask a few times); raise if the server exits or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    ready = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                ready += 1
                if ready >= times:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not ready in {timeout_s:.0f} s; see {log}")


def stop(proc: subprocess.Popen[bytes], grace_s: float = 60) -> None:
    """SIGTERM (graceful drain), then SIGKILL if it does not exit in time."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_server_pids(base_url: str, explicit: int | None) -> list[int]:
    """The server process and its children (uvicorn workers). Local servers only."""
    root = explicit
    if root is None:
        port = httpx.URL(base_url).port or 80
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                root = conn.pid
                break
    if root is None:
        return []
    try:
        proc = psutil.Process(root)
        return [root, *(c.pid for c in proc.children(recursive=True))]
    except psutil.Error:
        return []


@dataclass
class MemorySample:
    """Bytes summed over the server's processes at ``t_s`` seconds into a run."""

    t_s: float
    rss: int
    pss: int | None
    anon: int
    file: int
    processes: int


class MemoryReader:
    """RSS/anon/file of the server processes at every call; PSS (smaps_rollup walks every page
    table: ~75 ms with a 4 GB model mapped) at most every ``pss_every_s``, so the reader does
    not take CPU from the server it measures. ``pss_every_s=None``: never."""

    def __init__(self, pids: list[int], pss_every_s: float | None = 5.0) -> None:
        self.pids = pids
        self.pss_every_s = pss_every_s
        self._pss_at = float("-inf")
        self._pss: int | None = None

    def read(self, t_s: float = 0.0) -> MemorySample | None:
        rss = anon = file = alive = 0
        for pid in self.pids:
            fields = _status_fields(pid)
            if fields is None:
                continue
            alive += 1
            rss += fields.get("VmRSS", 0)
            anon += fields.get("RssAnon", 0)
            file += fields.get("RssFile", 0)
        every = self.pss_every_s
        if alive and every is not None and time.monotonic() - self._pss_at >= every:
            self._pss_at = time.monotonic()
            self._pss = _pss_sum(self.pids)
        return MemorySample(t_s, rss, self._pss, anon, file, alive) if alive else None


def _status_fields(pid: int) -> dict[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _pss_sum(pids: list[int]) -> int | None:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            return None
    return total
