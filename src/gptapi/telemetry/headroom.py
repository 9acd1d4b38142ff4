"""How much memory this process may still take before something kills it: the memory guard's
input (GPTAPI_MIN_FREE_MB).

The host's MemAvailable is the wrong number under a container or unit limit (systemd
``MemoryMax``, a Kubernetes limit, compose ``mem_limit``): the cgroup is OOM-killed long before
the host runs short. So when this process's cgroup (v2) or one of its ancestors has a
``memory.max`` (v1: ``memory.limit_in_bytes``), the headroom is the tightest ``limit - working
set`` among them. The working set is ``memory.current - inactive_file``, what Kubernetes evicts
on: inactive page cache, e.g. cold pages of the mmap'd model, is reclaimed before any OOM. The
headroom is never more than the host's MemAvailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class Headroom:
    available_bytes: int  # what may still be taken: the guard compares this
    limit_bytes: int | None  # the tightest cgroup memory.max, None when unlimited
    source: str  # "cgroup <path>" or "host MemAvailable"


class MemoryLimit:
    """The cgroup directories to watch are found once, at start; each ``read`` costs a few
    small file reads."""

    def __init__(self, cgroup_dirs: list[Path]) -> None:
        self.cgroup_dirs = [d for d in cgroup_dirs if _limit(d) is not None]

    @classmethod
    def detect(cls, root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> MemoryLimit:
        """This process's cgroup v2 directory and its ancestors up to ``root``; on a cgroup v1
        host, the memory controller's directory as this process sees it (a container's own).
        None of them limited, or no /sys/fs/cgroup: only the host's MemAvailable counts."""
        try:
            lines = self_cgroup.read_text().splitlines()
        except OSError:
            lines = []
        unified = next((line[3:] for line in lines if line.startswith("0::")), None)
        dirs: list[Path] = []
        if unified is not None:
            here = root / unified.strip().lstrip("/")
            dirs = [d for d in (here, *here.parents) if d == root or root in d.parents]
        return cls([*dirs, root / "memory"])

    def read(self) -> Headroom:
        available, source = int(psutil.virtual_memory().available), "host MemAvailable"
        limits = []
        for d in self.cgroup_dirs:
            limit, used = _limit(d), _working_set(d)
            if limit is None or used is None:
                continue
            limits.append(limit)
            if limit - used < available:
                available, source = max(0, limit - used), f"cgroup {d}"
        return Headroom(available, min(limits, default=None), source)

    def describe(self) -> str:
        """For the start-up log."""
        h = self.read()
        if h.limit_bytes is None:
            return f"no cgroup memory limit; host MemAvailable {h.available_bytes // 2**20} MiB"
        return (
            f"cgroup memory limit {h.limit_bytes // 2**20} MiB ({h.source}), "
            f"{h.available_bytes // 2**20} MiB left"
        )


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


_V1_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


def _limit(d: Path) -> int | None:
    limit = _read_int(d / "memory.max")  # v2
    if limit is None:
        limit = _read_int(d / "memory.limit_in_bytes")  # v1
        if limit is not None and limit >= _V1_UNLIMITED:
            return None
    return limit


def _working_set(d: Path) -> int | None:
    current = _read_int(d / "memory.current")
    inactive_key = "inactive_file"
    if current is None:
        current, inactive_key = _read_int(d / "memory.usage_in_bytes"), "total_inactive_file"
    if current is None:
        return None
    inactive = 0
    try:
        for line in (d / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key and value.strip().isdigit():
                inactive = int(value)
                break
    except OSError:
        pass
    return max(0, current - inactive)
