"""What the process costs in RAM, read cheaply from /proc.

RSS alone misleads for an mmap'd model: the weights count in the RSS of every process mapping
them, yet sit in RAM once (page cache). So a snapshot separates file-backed memory (weights,
shared) from anonymous memory (KV cache, buffers, Python heap: this process's own), and adds
PSS/USS, which split shared pages fairly between the processes mapping them.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

_KIB = 1024
_STATUS_FIELDS = {
    "VmRSS": "rss_bytes",
    "RssAnon": "rss_anon_bytes",
    "RssFile": "rss_file_bytes",
    "RssShmem": "rss_shmem_bytes",
    "VmHWM": "rss_peak_bytes",
}
_ROLLUP_FIELDS = ("Pss", "Private_Clean", "Private_Dirty", "Swap")


@dataclass(frozen=True)
class MemorySnapshot:
    """Bytes; None where this kernel does not report the field."""

    rss_bytes: int | None
    rss_anon_bytes: int | None  # private anonymous: KV cache, compute buffers, Python heap
    rss_file_bytes: int | None  # file-backed: the mmap'd weights (shared page cache)
    rss_shmem_bytes: int | None
    rss_peak_bytes: int | None  # VmHWM: highest RSS since the process started
    pss_bytes: int | None  # RSS with shared pages divided among the processes sharing them
    uss_bytes: int | None  # private pages only: what ending this process would free
    swap_bytes: int | None
    rollup_age_s: float | None  # age of pss/uss/swap: a cheap snapshot reuses the last reading
    system_available_bytes: int
    tracemalloc_current_bytes: int | None  # Python heap only (not llama.cpp's C allocations)
    tracemalloc_peak_bytes: int | None

    def as_dict(self) -> dict[str, int | float | None]:
        return asdict(self)


def _read_kib_fields(path: Path, wanted: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in wanted:
            parts = rest.split()
            if parts and parts[0].isdigit():
                found[key] = int(parts[0]) * _KIB
    return found


_rollup_lock = threading.Lock()
_last_rollup: tuple[float, dict[str, int]] | None = None


def _rollup(proc: Path, fresh: bool) -> tuple[dict[str, int], float]:
    """PSS/USS/swap from smaps_rollup, which walks every page table of the process: ~12 ms
    with the embedded model mapped, more with a bigger one. A non-fresh read reuses the last."""
    global _last_rollup
    own = proc.name == "self"
    if own and not fresh:
        with _rollup_lock:
            if _last_rollup is not None:
                taken, fields = _last_rollup
                return fields, time.monotonic() - taken
    fields = _read_kib_fields(proc / "smaps_rollup", set(_ROLLUP_FIELDS))
    if own:
        with _rollup_lock:
            _last_rollup = (time.monotonic(), fields)
    return fields, 0.0


def snapshot(pid: int | str = "self", *, fresh: bool = True) -> MemorySnapshot:
    """RSS fields from /proc/PID/status (~0.1 ms) and PSS/USS/swap from smaps_rollup (~12 ms
    here, more with a bigger mapping; ``fresh=False`` reuses the last reading). Call it off the
    event loop and off the decode thread."""
    proc = Path("/proc") / str(pid)
    status = _read_kib_fields(proc / "status", set(_STATUS_FIELDS))
    rollup, rollup_age_s = _rollup(proc, fresh)
    private = (
        rollup["Private_Clean"] + rollup["Private_Dirty"]
        if "Private_Clean" in rollup and "Private_Dirty" in rollup
        else None
    )
    tracing = tracemalloc.is_tracing() and pid == "self"
    current, peak = tracemalloc.get_traced_memory() if tracing else (None, None)
    return MemorySnapshot(
        **{name: status.get(field) for field, name in _STATUS_FIELDS.items()},
        pss_bytes=rollup.get("Pss"),
        uss_bytes=private,
        swap_bytes=rollup.get("Swap"),
        rollup_age_s=round(rollup_age_s, 3) if rollup else None,
        system_available_bytes=psutil.virtual_memory().available,
        tracemalloc_current_bytes=current,
        tracemalloc_peak_bytes=peak,
    )


def snapshot_cost_s(samples: int = 20, *, fresh: bool = True) -> float:
    """Mean seconds per snapshot, measured now (for the docs and the start-up log)."""
    start = time.perf_counter()
    for _ in range(samples):
        snapshot(fresh=fresh)
    return (time.perf_counter() - start) / samples


def delta(start: MemorySnapshot, end: MemorySnapshot) -> dict[str, int | None]:
    """end - start for every byte field both have."""
    a, b = start.as_dict(), end.as_dict()
    return {
        k: None if a[k] is None or b[k] is None else int(b[k] - a[k])  # type: ignore[operator]
        for k in a
        if k.endswith("_bytes")
    }
