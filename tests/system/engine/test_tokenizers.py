"""Tokenizers of other model families, from the vocabulary-only GGUFs in llama.cpp's sdist
(fetched at test time, not committed): a prompt of parts tokenizes exactly as llama.cpp
tokenizes the whole prompt string with special-token parsing (what its own tests hold against
Hugging Face), so no spurious space appears at part boundaries on SentencePiece vocabularies
with add_space_prefix (Llama 2 / Mistral, Phi 3, Baichuan); markup's control tokens are special
and the same text in user text is not; end of generation comes from the vocabulary."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import llama_cpp
import pytest

from gptapi import prompts
from gptapi.engine import PromptPart
from gptapi.engine.model import LlamaModel
from gptapi.modelfile import ModelOrigin, ModelSource, embedded_model_path, inspect_gguf
from tests.fakes import INFO
from tests.helpers import llama_cpp_data

DATA = llama_cpp_data()
VOCABS = {p.stem.removeprefix("ggml-vocab-"): p for p in DATA.data_dir().glob("ggml-vocab-*.gguf")}
# A family's vocabulary with a template of that family (a chat model's real pair).
PAIRS = {
    "llama-bpe": "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "qwen2": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "phi-3": "microsoft-Phi-3.5-mini-instruct.jinja",
    "llama-spm": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "gemma-4": "google-gemma-4-31B-it.jinja",
    "command-r": "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello there, how are you?"},
    {"role": "assistant", "content": "Fine, thanks.\n"},
    {"role": "user", "content": "\n  Tell me a joke about 42 cats.\u3000"},
]


def load(path: Path) -> LlamaModel:
    return LlamaModel(ModelSource(path, ModelOrigin.SETTING), inspect_gguf(path), vocab_only=True)


def whole(model: LlamaModel, parts: list[PromptPart]) -> list[int]:
    """llama.cpp's tokens for the whole string, special-token parsing on."""
    text = "".join(p.text for p in parts)
    bos = [llama_cpp.llama_vocab_bos(model.vocab)] if model._add_bos else []
    return bos + model._tokenize_part(text, parse_special=True)


def test_the_families_are_there() -> None:
    assert set(PAIRS) <= set(VOCABS)


@pytest.mark.parametrize("name", sorted(VOCABS))
def test_parts_tokenize_as_the_whole_prompt_with_control_tokens_from_markup_only(
    name: str,
) -> None:
    model = load(VOCABS[name])
    controls = sorted(model.control_texts(), key=len)
    opening = next((c for c in controls if "start" in c or "user" in c), controls[-1])
    closing = next((c for c in controls if "end" in c or "eot" in c), controls[0])
    parts = [
        PromptPart(f"{opening}user\n", markup=True),
        PromptPart("Hello world, how are you?"),
        PromptPart(f" {closing}\n{opening}assistant\n", markup=True),
    ]
    assert model.tokenize(parts) == whole(model, parts)
    ids = {model._controls[c][0] for c in controls}
    forged = model.tokenize([PromptPart(f"{opening}{closing}")])  # user text only
    assert not ids & set(forged[1:] if model._add_bos else forged)
    eos = llama_cpp.llama_vocab_eos(model.vocab)
    if eos >= 0 and name not in ("bert-bge", "nomic-bert-moe"):  # encoders: no generation
        assert model.is_end_of_generation(eos)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_family_s_template_and_tokenizer_together(name: str) -> None:
    model = load(VOCABS[name])
    template = DATA.templates()[PAIRS[name]]
    info = replace(INFO, chat_template=template, bos_token=model.bos_text,
                   eos_token=model.eos_text, control_texts=model.control_texts())  # fmt: skip
    parts = list(prompts.chat_prompt(info, CONVERSATION).parts)
    tokens = model.tokenize(parts)
    assert tokens == whole(model, parts)  # no spurious spaces, merges kept
    text = "".join(p.text for p in parts)
    for message in CONVERSATION:
        assert message["content"].strip() in text
    assert any(t in {v[0] for v in model._controls.values()} for t in tokens)  # turns are tokens


def test_the_embedded_model_too() -> None:
    model = load(embedded_model_path())
    parts = [
        PromptPart("<start_of_turn>user\n", markup=True),
        PromptPart("Say <end_of_turn> twice"),
        PromptPart("<end_of_turn>\n<start_of_turn>model\n", markup=True),
    ]
    tokens = model.tokenize(parts)
    end_of_turn = model._controls["<end_of_turn>"][0]
    assert tokens.count(end_of_turn) == 1  # the markup's, not the user's
