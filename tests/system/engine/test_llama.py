"""Both llama.cpp engines on the real model, driven directly (no HTTP)."""

import asyncio
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.engine.llama import LlamaEngine, load_engine
from gptapi.engine.model import set_field
from tests.helpers import KEYWORDS, prompt_for


async def answers(engine: LlamaEngine, words: list[str]) -> list[str]:
    async def one(word: str) -> str:
        tokens = engine.tokenize(prompt_for(word))
        params = SamplingParams(max_tokens=8, stop=("\n",))
        return "".join([d.text async for d in engine.generate(tokens, params)])

    return await asyncio.gather(*(one(w) for w in words))


@pytest.mark.parametrize(("engine_kind", "slots"), [("batched", 4), ("pool", 2)])
def test_engine_answers_concurrent_requests_without_cross_talk(
    engine_kind: str, slots: int
) -> None:
    engine = load_engine(Settings(engine=engine_kind, slots=slots, n_threads=2, n_ctx=512))
    try:
        assert engine.slots == slots
        words = KEYWORDS[:6]  # more requests than slots: the rest wait in the schedulers
        for word, text in zip(words, asyncio.run(answers(engine, words)), strict=True):
            assert word in text
            assert not any(other in text for other in words if other != word)
    finally:
        engine.close()


def test_pool_engine_never_builds_more_contexts_than_threads() -> None:
    engine = load_engine(Settings(engine="pool", slots=8, n_threads=2, n_ctx=256))
    try:
        assert engine.slots == 2
    finally:
        engine.close()


def test_info_reports_the_per_slot_context_and_the_model() -> None:
    engine = load_engine(Settings(slots=3, n_ctx=1024))
    try:
        assert engine.info.n_ctx == 1024
        assert engine.info.id == "Gemma 3 270m"
        assert engine.info.chat_template is None
        assert engine.info.bos_token == "<bos>"
    finally:
        engine.close()


LOAD_AND_REPORT = """
from gptapi.config import Settings
from gptapi.engine.llama import load_engine
from gptapi.telemetry.memory import snapshot
engine = load_engine(Settings(slots=1, n_ctx=256, use_mmap={use_mmap}))
s = snapshot()
print(s.rss_anon_bytes, s.rss_file_bytes)
"""


@pytest.mark.parametrize("use_mmap", [True, False])
def test_use_mmap_decides_whether_weights_are_file_backed_or_anonymous(
    use_mmap: bool, model_path: Path
) -> None:
    # A fresh process, so nothing else mapped the model before.
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_REPORT.format(use_mmap=use_mmap)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    anon, file_backed = map(int, result.stdout.split()[-2:])
    weights = 0.8 * model_path.stat().st_size
    if use_mmap:
        assert file_backed >= weights
    else:
        assert anon >= weights
        assert file_backed < weights


def test_set_field_refuses_fields_the_struct_does_not_have() -> None:
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    with pytest.raises(AttributeError, match="use_mmap"):
        set_field(params, "use_mmap", True)


def _kv_buffer_mib(caplog: pytest.LogCaptureFixture, kv_cache_type: str) -> float:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gptapi.llama"):
        engine = load_engine(Settings(slots=2, n_ctx=2048, kv_cache_type=kv_cache_type))
    try:
        words = KEYWORDS[:2]
        for word, text in zip(words, asyncio.run(answers(engine, words)), strict=True):
            assert word in text
    finally:
        engine.close()
    sizes = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"KV buffer size =\s*([\d.]+) MiB", r.getMessage()))
    ]
    assert sizes, "llama.cpp logged no KV buffer size"
    return sum(sizes)


def test_q8_0_kv_cache_halves_its_ram_and_still_answers(caplog: pytest.LogCaptureFixture) -> None:
    f16 = _kv_buffer_mib(caplog, "f16")
    q8 = _kv_buffer_mib(caplog, "q8_0")
    # q8_0 stores 34 bytes per 32 values against f16's 64.
    assert q8 == pytest.approx(f16 * 34 / 64, rel=0.05)
