"""The memory guard's headroom under a cgroup limit, on fake cgroup directories (fast tier)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from gptapi.engine import SamplingParams
from gptapi.errors import ServerBusy
from gptapi.gateway import Gateway
from gptapi.telemetry.headroom import MemoryLimit
from gptapi.telemetry.requestlog import RequestRecord
from tests.fakes import FakeEngine

MIB = 2**20


def cgroup(root: Path, path: str, files: dict[str, str]) -> Path:
    d = root / path
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def self_cgroup(tmp: Path, line: str) -> Path:
    f = tmp / "cgroup"
    f.write_text(line)
    return f


def test_v2_headroom_is_the_limit_minus_the_working_set(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    cgroup(root, "system.slice/gptapi.service", {
        "memory.max": str(1024 * MIB), "memory.current": str(900 * MIB),
        "memory.stat": f"anon {500 * MIB}\ninactive_file {300 * MIB}\nactive_file 1\n",
    })  # fmt: skip
    limit = MemoryLimit.detect(root, self_cgroup(tmp_path, "0::/system.slice/gptapi.service\n"))
    h = limit.read()
    # 1024 - (900 - 300 inactive page cache, reclaimable before any OOM)
    assert (h.available_bytes, h.limit_bytes) == (424 * MIB, 1024 * MIB)
    assert "gptapi.service" in h.source
    assert "1024 MiB" in limit.describe()


def test_the_tightest_ancestor_counts(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    cgroup(root, "kubepods", {"memory.max": str(512 * MIB), "memory.current": str(400 * MIB)})
    cgroup(root, "kubepods/pod1", {"memory.max": "max", "memory.current": str(100 * MIB)})
    limit = MemoryLimit.detect(root, self_cgroup(tmp_path, "0::/kubepods/pod1\n"))
    assert limit.read().available_bytes == 112 * MIB
    assert limit.read().limit_bytes == 512 * MIB


def test_v1_limit_and_unlimited_hosts(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    cgroup(root, "memory", {
        "memory.limit_in_bytes": str(2048 * MIB), "memory.usage_in_bytes": str(1000 * MIB),
        "memory.stat": f"cache 1\ntotal_inactive_file {200 * MIB}\n",
    })  # fmt: skip
    v1 = MemoryLimit.detect(root, self_cgroup(tmp_path, "4:memory:/x\n0::/\n"))
    assert v1.read().available_bytes == min(1248 * MIB, psutil.virtual_memory().available)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    unlimited = MemoryLimit.detect(root, self_cgroup(tmp_path, "0::/\n"))
    h = unlimited.read()
    assert h.limit_bytes is None and h.source == "host MemAvailable"
    assert MemoryLimit.detect(tmp_path / "none", tmp_path / "missing").read().limit_bytes is None


def test_the_guard_refuses_with_503_when_the_cgroup_is_nearly_full(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    d = cgroup(root, "svc", {"memory.max": str(1024 * MIB), "memory.current": str(1000 * MIB)})
    limit = MemoryLimit.detect(root, self_cgroup(tmp_path, "0::/svc\n"))
    gateway = Gateway(
        FakeEngine(), max_queue=4, request_timeout_s=10, min_free_bytes=64 * MIB,
        memory_limit=limit,
    )  # fmt: skip
    record = RequestRecord(request_id="r", route="/x", method="POST", key_id="k")

    async def one() -> str:
        result = await gateway.complete("hi there", SamplingParams(max_tokens=2), record=record)
        return result.text

    with pytest.raises(ServerBusy, match="24 MiB available, below the 64 MiB guard"):
        asyncio.run(one())
    (d / "memory.current").write_text(str(500 * MIB))  # memory freed: served again
    assert asyncio.run(one()) == " t1 t2"
