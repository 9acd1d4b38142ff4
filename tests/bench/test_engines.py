from pathlib import Path
from types import SimpleNamespace

from bench import engines
from bench.engines import percentile, prompt
from gptapi import prompts
from gptapi.modelfile import embedded_model_path
from tests.test_prompts import GEMMA_TEMPLATE, INSTRUCT


def test_every_request_gets_a_distinct_prompt() -> None:
    prompts = [prompt(i) for i in range(1000)]
    assert len(set(prompts)) == 1000


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5
    assert percentile([7.0], 0.95) == 7.0


def test_llama_server_gets_the_text_gptapi_feeds_its_engine(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Same text -> same prompt tokens on both sides of the comparison.
    summary = SimpleNamespace(metadata={"tokenizer.chat_template": GEMMA_TEMPLATE})
    monkeypatch.setattr(engines, "inspect_gguf", lambda path: summary)
    render = engines.chat_renderer(Path("instruct.gguf"))
    assert render(prompt(3)) == prompts.generate_prompt(INSTRUCT, prompt(3)).text


def test_base_model_prompts_go_to_llama_server_unchanged() -> None:
    render = engines.chat_renderer(embedded_model_path())
    assert render(prompt(3)) == prompt(3)
