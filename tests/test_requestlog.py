import json
from pathlib import Path

import pytest

from gptapi.requestlog import JsonLinesLog

pytestmark = pytest.mark.fast


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
