"""docs/results holds what a reader needs to check the docs' figures, small and with plain
names (docs/results/README.md): no raw logs, nothing that breaks a shell or a URL."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
MAX_BYTES = 3_500_000
PLAIN = re.compile(r"^[A-Za-z0-9._/-]+$")


def committed() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "docs/results"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / line for line in out.splitlines()]


def test_results_are_small_plain_named_and_hold_no_raw_logs() -> None:
    files = committed()
    assert files, "docs/results is empty or not tracked"
    total = sum(f.stat().st_size for f in files if f.exists())
    assert total <= MAX_BYTES, f"docs/results holds {total / 1e6:.1f} MB (limit ~3 MB)"
    names = [str(f.relative_to(RESULTS)) for f in files]
    assert [n for n in names if not PLAIN.match(n)] == []
    assert [n for n in names if n.endswith((".log", "requests.jsonl", "memory.jsonl"))] == []
