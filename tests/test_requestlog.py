import json
from pathlib import Path

from gptapi.requestlog import JsonLinesLog


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


def test_an_unwritable_log_never_raises(tmp_path: Path) -> None:
    target = tmp_path / "requests.jsonl"
    target.mkdir()  # a directory where the file should be: every write fails
    log = JsonLinesLog(target, max_bytes=2000, backups=1)
    log.write({"still": "fine"})
    log.close()
