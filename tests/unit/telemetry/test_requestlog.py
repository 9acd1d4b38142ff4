import json
from pathlib import Path

from gptapi.telemetry.requestlog import JsonLinesLog


def test_lines_are_written_as_json_and_rotated_at_the_size_cap(tmp_path: Path) -> None:
    log = JsonLinesLog(tmp_path / "requests.jsonl", max_bytes=2000, backups=2)
    for i in range(100):
        log.write({"i": i, "pad": "x" * 50})
    log.close()
    files = sorted(tmp_path.glob("requests.jsonl*"))
    assert [f.name for f in files] == ["requests.jsonl", "requests.jsonl.1", "requests.jsonl.2"]
    assert all(f.stat().st_size <= 2000 for f in files)
    last = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert last[-1]["i"] == 99


def test_a_line_that_cannot_be_written_is_dropped_and_the_next_one_is_not(
    tmp_path: Path,
) -> None:
    log = JsonLinesLog(tmp_path / "requests.jsonl", max_bytes=2000, backups=1)
    circular: dict[str, object] = {}
    circular["self"] = circular  # json.dumps raises on it: write() must not
    log.write(circular)
    log.write({"path": tmp_path, "n": 1})  # not JSON types: written as their str()
    log.close()
    lines = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"path": str(tmp_path), "n": 1}]


def test_no_backups_means_the_file_starts_over_at_the_cap(tmp_path: Path) -> None:
    log = JsonLinesLog(tmp_path / "requests.jsonl", max_bytes=2000, backups=0)
    for i in range(100):
        log.write({"i": i, "pad": "x" * 50})
    log.close()
    assert [f.name for f in tmp_path.iterdir()] == ["requests.jsonl"]
    path = tmp_path / "requests.jsonl"
    assert path.stat().st_size <= 2000
    assert json.loads(path.read_text().splitlines()[-1])["i"] == 99


def _write_lines(path: str, who: int, n: int) -> None:
    log = JsonLinesLog(Path(path), max_bytes=20_000, backups=100)
    for i in range(n):
        log.write({"who": who, "i": i, "pad": "x" * 40})
    log.close()


def test_two_processes_writing_one_log_lose_no_line_at_rotation(tmp_path: Path) -> None:
    """--workers N: every worker writes requests.jsonl; rotation must not lose lines."""
    import multiprocessing

    path = tmp_path / "requests.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_lines, args=(str(path), w, 3000)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    files = list(tmp_path.glob("requests.jsonl*"))
    assert len(files) > 10  # it did rotate, many times, under both writers
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 6000
    assert {(e["who"], e["i"]) for e in lines} == {(w, i) for w in (1, 2) for i in range(3000)}
    assert all(f.stat().st_size <= 20_000 for f in files)
