"""The twin script on small shapes: a GGUF the real engine loads and generates from."""

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.engine.llama import load_engine
from gptapi.modelfile import inspect_gguf
from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "make_twin_model.py"
SMALL = ("--layers", "2", "--hidden", "256", "--ffn", "512")


def make(*outs: Path, seed: str = "0") -> None:
    """Write a twin to each path, the scripts side by side (one core each)."""
    runs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), *SMALL, "--seed", seed, "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for out in outs
    ]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err.decode()[-2000:]


def test_small_twin_loads_generates_and_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a.gguf", tmp_path / "b.gguf"
    make(first, second)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second)]
    assert digest[0] == digest[1]

    summary = inspect_gguf(first)
    assert summary.actual_size == summary.expected_size
    assert "random weights" in str(summary.metadata["general.name"])
    assert summary.metadata["gemma3.attention.head_count"] == 8
    assert summary.metadata["gemma3.attention.head_count_kv"] == 4

    engine = load_engine(Settings(model_path=first, slots=2, n_ctx=256))
    try:
        assert engine.info.chat_template and "<start_of_turn>" in engine.info.chat_template

        async def generate() -> int:
            tokens = engine.tokenize("The quick brown fox")
            n = 0
            async for delta in engine.generate(tokens, SamplingParams(max_tokens=6)):
                n = delta.completion_tokens
            return n

        assert asyncio.run(generate()) == 6
    finally:
        engine.close()
