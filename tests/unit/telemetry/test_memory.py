from pathlib import Path

import pytest

from gptapi.telemetry import memory


def test_snapshot_reads_every_field_on_linux() -> None:
    snap = memory.snapshot()
    values = snap.as_dict()
    for name in ("rss_bytes", "rss_anon_bytes", "rss_file_bytes", "pss_bytes", "uss_bytes"):
        assert values[name] is not None and values[name] > 0, name
    assert snap.rss_peak_bytes is not None and snap.rss_bytes is not None
    assert snap.rss_peak_bytes >= snap.rss_bytes
    assert snap.system_available_bytes > 0


def test_snapshot_degrades_to_none_where_proc_lacks_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "_read_kib_fields", lambda path, wanted: {})
    snap = memory.snapshot()
    assert snap.rss_bytes is None
    assert snap.pss_bytes is None
    assert snap.uss_bytes is None
    assert snap.system_available_bytes > 0


def test_missing_proc_file_reads_as_no_fields(tmp_path: Path) -> None:
    assert memory._read_kib_fields(tmp_path / "absent", {"VmRSS"}) == {}


def test_delta_subtracts_field_by_field() -> None:
    a = memory.snapshot()
    grown = memory.MemorySnapshot(**{**a.as_dict(), "rss_anon_bytes": (a.rss_anon_bytes or 0) + 10})
    d = memory.delta(a, grown)
    assert d["rss_anon_bytes"] == 10
    assert d["rss_file_bytes"] == 0


def test_the_python_heap_is_measured_only_while_tracemalloc_traces() -> None:
    import tracemalloc

    assert not tracemalloc.is_tracing()
    assert memory.snapshot().tracemalloc_current_bytes is None
    tracemalloc.start()
    try:
        held = [bytes(1000) for _ in range(100)]
        snap = memory.snapshot()
        assert snap.tracemalloc_current_bytes is not None
        assert snap.tracemalloc_current_bytes >= 100_000 and held
    finally:
        tracemalloc.stop()
