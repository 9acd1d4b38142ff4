"""/v1 fields real clients send, on the real model: n choices (equal at temperature 0,
reproducible with a seed, the prompt computed once), penalties and logit_bias changing what is
generated, /tokenize and /detokenize against an independent tokenizer, and the openai SDK's
ordinary calls with None and SDK-only fields."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import LiveServer
from tests.helpers import metric_values

PROMPT = "The list of fruits: apple, banana, apple, banana, apple,"


def test_n_choices_are_equal_at_temperature_0_and_reproducible_with_a_seed(
    oai: openai.OpenAI, live_server: LiveServer
) -> None:
    with live_server.client() as c:
        before = metric_values(c.get("/metrics").text)
    greedy = oai.completions.create(model="m", prompt=PROMPT, max_tokens=8, temperature=0, n=2)
    assert [ch.index for ch in greedy.choices] == [0, 1]
    assert greedy.choices[0].text == greedy.choices[1].text
    assert greedy.usage is not None and greedy.usage.completion_tokens >= 2
    with live_server.client() as c:
        after = metric_values(c.get("/metrics").text)
    shared = after[("gptapi_prompt_tokens_shared_total", ())] - before.get(
        ("gptapi_prompt_tokens_shared_total", ()), 0.0
    )
    # The two sequences started together: the second took the first's prompt (all but the
    # last token, which carries each sequence's own logits) instead of computing it.
    assert shared >= greedy.usage.prompt_tokens - 2, (shared, greedy.usage.prompt_tokens)

    def sampled() -> list[str]:
        r = oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8, temperature=1.0, seed=42, n=2,
        )  # fmt: skip
        return [ch.message.content or "" for ch in r.choices]

    first, second = sampled(), sampled()
    assert first == second  # the same seeds, the same choices


def test_penalties_and_logit_bias_change_what_is_generated(
    oai: openai.OpenAI, live_server: LiveServer
) -> None:
    def text(**fields: Any) -> str:
        r = oai.completions.create(model="m", prompt=PROMPT, max_tokens=12, temperature=0,
                                   **fields)  # fmt: skip
        return r.choices[0].text

    plain = text()
    assert text(frequency_penalty=2.0) != plain
    assert text(extra_body={"repetition_penalty": 1.8}) != plain
    # Presence subtracts once per token seen: too little against this loop's margins, enough
    # in free text (a word is not used again).
    story = {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0}
    free = [oai.completions.create(model="m", presence_penalty=p, **story).choices[0].text
            for p in (0.0, 2.0)]  # type: ignore[call-overload]  # fmt: skip
    assert free[0] != free[1]
    with live_server.client() as c:
        tokens = c.post("/tokenize", json={"content": plain}).json()["tokens"]
    banned = text(logit_bias={str(tokens[0]): -100})  # the first token greedy would pick
    assert banned != plain


def test_tokenize_and_detokenize_agree_with_an_independent_tokenizer(
    live_server: LiveServer, tokenizer: Any
) -> None:
    text = "Grüße, <start_of_turn>user world!"
    with live_server.client() as c:
        ids = c.post("/tokenize", json={"content": text}).json()["tokens"]
        with_bos = c.post("/tokenize", json={"content": text, "add_special": True}).json()
        back = c.post("/detokenize", json={"tokens": ids}).json()["content"]
        pieces = c.post("/tokenize", json={"content": "hi", "with_pieces": True}).json()
    independent = tokenizer(text)  # BOS first, markup as text
    assert with_bos["tokens"] == independent
    assert ids == independent[1:]
    assert back == text
    assert "".join(p["piece"] for p in pieces["tokens"]) == "hi"


def test_the_sdk_s_ordinary_calls_with_none_and_sdk_only_fields(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="m",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Say yes."},
        ],
        temperature=None,  # type: ignore[arg-type]
        top_p=None,  # type: ignore[arg-type]
        store=False,
        metadata={"team": "a"},
        service_tier="auto",
        prompt_cache_key="k1",
        parallel_tool_calls=False,
        tool_choice="auto",
        top_logprobs=0,
        n=1,
        presence_penalty=0,
        max_completion_tokens=4,
        stream_options=None,
    )
    assert r.choices[0].finish_reason in ("stop", "length")


def test_logprobs_are_the_model_s_distribution_plain_and_streamed(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Count: one, two,"}],
        max_tokens=6, temperature=0, logprobs=True, top_logprobs=3,
    )  # fmt: skip
    choice = r.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    entries = choice.logprobs.content
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        # Greedy picks the likeliest token: it is the first alternative, with its logprob.
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)
        assert entry.top_logprobs[0].token == entry.token
        assert sum(2.718281828**t.logprob for t in entry.top_logprobs) <= 1.0001
    if choice.finish_reason == "length":
        assert "".join(e.token for e in entries) == choice.message.content
    streamed = oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Count: one, two,"}],
        max_tokens=6, temperature=0, logprobs=True, top_logprobs=3, stream=True,
    )  # fmt: skip
    tokens = [e.token for chunk in streamed for c in chunk.choices if c.logprobs
              for e in c.logprobs.content or []]  # fmt: skip
    assert tokens == [e.token for e in entries]
    legacy = oai.completions.create(model="m", prompt=PROMPT, max_tokens=4, temperature=0,
                                    logprobs=2)  # fmt: skip
    assert legacy.choices[0].logprobs is not None
    assert len(legacy.choices[0].logprobs.token_logprobs or []) >= 1
