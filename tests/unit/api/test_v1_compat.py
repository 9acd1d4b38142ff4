"""/v1 as OpenAI's clients send it (fake engine, in process): null means absent, unknown fields
are ignored and counted (refused in strict mode), no-op fields are accepted, and what is asked
for (penalties, logit_bias, structured output) reaches the engine's sampling parameters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEngine
from tests.helpers import AUTH, assert_error, metric_values, serve_fake

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Hello"}]


def chat(client: TestClient, **fields: Any) -> Any:
    return client.post(CHAT, json={"messages": MESSAGES, "max_tokens": 2, **fields}, headers=AUTH)


def test_null_means_absent_for_every_optional_field(client: TestClient, engine: FakeEngine) -> None:
    nulls = {
        "temperature": None, "top_p": None, "n": None, "stream": None, "stop": None,
        "seed": None, "user": None, "presence_penalty": None, "frequency_penalty": None,
        "logit_bias": None, "logprobs": None, "top_logprobs": None, "response_format": None,
        "tools": None, "tool_choice": None, "parallel_tool_calls": None, "stream_options": None,
        "max_completion_tokens": None, "model": None,
    }  # fmt: skip
    r = chat(client, **nulls)
    assert r.status_code == 200, r.text
    params = engine.params[-1]
    assert (params.temperature, params.top_p) == (1.0, 1.0)  # OpenAI's defaults
    r = client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": None,
                                              "temperature": None}, headers=AUTH)  # fmt: skip
    assert r.status_code == 200, r.text
    assert engine.params[-1].max_tokens == 16


def test_sdk_and_unknown_fields_are_ignored_and_counted(client: TestClient) -> None:
    r = chat(
        client,
        store=False,
        metadata={"a": "b"},
        service_tier="auto",
        reasoning_effort="low",
        prompt_cache_key="k",
        some_future_field=1,
        stream_options=None,
        messages=[
            {"role": "system", "content": "Be brief.", "id": "m1"},
            {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {}}]},
        ],
    )
    assert r.status_code == 200, r.text
    values = metric_values(client.get("/metrics", headers=AUTH).text)

    def counted(field: str) -> float:
        return values[("gptapi_v1_ignored_fields_total", (("field", field),))]

    assert counted("store") == counted("metadata") == counted("messages.id") == 1
    assert counted("messages.content.cache_control") == 1
    assert counted("other") == 1  # some_future_field: no series of its own
    assert counted("verbosity") == 0  # known names exist at 0


def test_strict_mode_refuses_unknown_fields_naming_them() -> None:
    with serve_fake(v1_strict=True) as c:
        r = chat(c, store=False)
        assert_error(r, 400, "unsupported_parameter")
        assert "store" in r.json()["error"]["message"]
        assert chat(c).status_code == 200


def test_an_assistant_turn_without_text_is_history_not_an_error(client: TestClient) -> None:
    for content in ("", None):
        history = [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": "Again"},
        ]
        assert chat(client, messages=history).status_code == 200, content
    r = chat(client, messages=[{"role": "user", "content": None}])
    assert_error(r, 400, "validation_error")


@pytest.mark.parametrize(
    "fields",
    [
        {"tool_choice": "auto"}, {"tool_choice": "none"}, {"parallel_tool_calls": True},
        {"tools": []}, {"n": 1}, {"presence_penalty": 0}, {"logprobs": False},
        {"top_logprobs": 0}, {"logit_bias": {}}, {"response_format": {"type": "text"}},
        {"function_call": "auto"}, {"functions": []},
    ],
)  # fmt: skip
def test_fields_that_are_no_ops_as_sent_are_accepted(
    client: TestClient, fields: dict[str, Any]
) -> None:
    assert chat(client, **fields).status_code == 200


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": {"name": "f"}}, "function_call"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_what_is_not_supported_yet_is_a_400_naming_it(
    client: TestClient, fields: dict[str, Any], param: str
) -> None:
    r = chat(client, **fields)
    assert_error(r, 400, "unsupported_parameter")
    assert param in r.json()["error"]["message"]


def test_penalties_and_logit_bias_reach_the_sampler(client: TestClient, engine: FakeEngine) -> None:
    r = chat(client, presence_penalty=0.5, frequency_penalty=-0.5, repeat_penalty=1.3,
             logit_bias={"7": -100, "12": 5.5})  # fmt: skip
    assert r.status_code == 200, r.text
    params = engine.params[-1]
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -0.5)
    assert params.repetition_penalty == 1.3
    assert params.logit_bias == ((7, -100.0), (12, 5.5))
    r = client.post("/generate-text", json={"prompt": "Hi", "frequency_penalty": 1.0},
                    headers=AUTH)  # fmt: skip
    assert r.status_code == 200 and engine.params[-1].frequency_penalty == 1.0


@pytest.mark.parametrize(
    "fields",
    [{"logit_bias": {"5000": 1}}, {"logit_bias": {"x": 1}}, {"logit_bias": {"1": 101}},
     {"presence_penalty": 2.5}, {"repetition_penalty": 0}],
)  # fmt: skip
def test_out_of_range_sampling_fields_are_400s(client: TestClient, fields: dict[str, Any]) -> None:
    assert chat(client, **fields).status_code == 400


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_structured_output_becomes_a_grammar(client: TestClient, engine: FakeEngine) -> None:
    assert chat(client, response_format={"type": "json_object"}).status_code == 200
    assert engine.params[-1].grammar is not None and "root" in engine.params[-1].grammar
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA, "strict": True}}
    assert chat(client, response_format=fmt).status_code == 200
    assert "age" in (engine.params[-1].grammar or "")
    r = client.post("/answer-question", json={"question": "Who?", "json_schema": SCHEMA},
                    headers=AUTH)  # fmt: skip
    assert r.status_code == 200 and "age" in (engine.params[-1].grammar or "")
    assert chat(client).status_code == 200 and engine.params[-1].grammar is None


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "integer", "minimum": 3}, "minimum"),
        ({"type": "string", "format": "email"}, "email"),
        ({"type": "object", "properties": {"a": {"not": {}}}}, "#/properties/a: 'not'"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"$ref": "https://example.com/s.json"}, "local"),
        ({"type": "strange"}, "strange"),
        ({"type": "object", "required": "a"}, "required"),
    ],
)
def test_a_schema_the_grammar_cannot_enforce_is_a_400_naming_it(
    client: TestClient, schema: dict[str, Any], named: str
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    r = chat(client, response_format=fmt)
    assert_error(r, 400, "unsupported_parameter")
    assert named in r.json()["error"]["message"]
    r = client.post("/generate-text", json={"prompt": "x", "json_schema": schema}, headers=AUTH)
    assert_error(r, 400, "unsupported_parameter")
    assert named in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "fmt", [{"type": "xml"}, {"kind": "json"}, {"type": "json_schema", "json_schema": "x"}]
)
def test_a_malformed_response_format_is_a_400(client: TestClient, fmt: dict[str, Any]) -> None:
    assert_error(chat(client, response_format=fmt), 400, "unsupported_parameter")


def test_tokenize_and_detokenize_in_llama_server_shapes(client: TestClient) -> None:
    r = client.post("/tokenize", json={"content": "a b c"}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"tokens": [1, 2, 3]}
    r = client.post("/tokenize", json={"content": "a b", "with_pieces": True}, headers=AUTH)
    assert r.json() == {"tokens": [{"id": 1, "piece": " w1"}, {"id": 2, "piece": " w2"}]}
    r = client.post("/detokenize", json={"tokens": [1, 2]}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"content": " w1 w2"}
    assert_error(client.post("/detokenize", json={"tokens": [5000]}, headers=AUTH), 422,
                 "validation_error")  # fmt: skip
    assert_error(client.post("/tokenize", json={"content": "x"}), 401, "invalid_api_key")


def test_n_choices_are_n_sequences_indexed_with_usage_as_openai_counts_it(
    client: TestClient, engine: FakeEngine
) -> None:
    r = chat(client, n=3, seed=7, temperature=1.0)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert sorted(p.seed for p in engine.params[-3:]) == [7, 8, 9]  # seed + i
    usage = body["usage"]
    assert usage["completion_tokens"] == 3 * 2  # every choice's tokens; the prompt once
    assert usage["total_tokens"] == usage["prompt_tokens"] + 6
    assert chat(client, n=17).status_code == 400


def test_n_streamed_choices_carry_their_index(client: TestClient) -> None:
    body = {"messages": MESSAGES, "max_tokens": 3, "n": 2, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with client.stream("POST", CHAT, json=body, headers=AUTH) as r:
        assert r.status_code == 200
        chunks = [json.loads(line[6:]) for line in r.iter_lines()
                  if line.startswith("data: {")]  # fmt: skip
    text = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            text[choice["index"]] += choice["delta"].get("content") or ""
            if choice["finish_reason"]:
                finishes[choice["index"]] = choice["finish_reason"]
    assert text[0] == text[1] == " t1 t2 t3"
    assert finishes == {0: "length", 1: "length"}
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def test_one_refused_choice_refuses_the_request_and_frees_the_others() -> None:
    engine = FakeEngine()
    with serve_fake(engine, max_inflight_per_key=2) as c:
        r = chat(c, n=3)
        assert_error(r, 429, "too_many_requests_in_flight")
        assert c.get("/ready").json()["busy_slots"] == 0
        assert chat(c, n=2).status_code == 200


def test_logprobs_in_openai_s_shapes_plain_and_streamed(client: TestClient) -> None:
    r = chat(client, logprobs=True, top_logprobs=2)
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in content] == [" t1", " t2"]
    assert content[0]["logprob"] == -0.5 and content[0]["bytes"] == list(b" t1")
    assert [t["token"] for t in content[0]["top_logprobs"]] == [" a0", " a1"]
    assert chat(client).json()["choices"][0]["logprobs"] is None
    r = client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2, "logprobs": 1},
                    headers=AUTH)  # fmt: skip
    lp = r.json()["choices"][0]["logprobs"]
    assert lp["tokens"] == [" t1", " t2"] and lp["token_logprobs"] == [-0.5, -0.5]
    assert lp["top_logprobs"] == [{" a0": -1.0}, {" a0": -1.0}] and lp["text_offset"] == [0, 3]
    body = {"messages": MESSAGES, "max_tokens": 2, "stream": True, "logprobs": True}
    with client.stream("POST", CHAT, json=body, headers=AUTH) as s:
        chunks = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
    streamed = [e["token"] for c in chunks for ch in c["choices"] if ch.get("logprobs")
                for e in ch["logprobs"]["content"]]  # fmt: skip
    assert streamed == [" t1", " t2"]
    assert chat(client, logprobs=True, top_logprobs=21).status_code == 400


def test_stop_strings_do_not_cut_structured_output(client: TestClient, engine: FakeEngine) -> None:
    assert chat(client, stop=["}"], response_format={"type": "json_object"}).status_code == 200
    assert engine.params[-1].stop == ()
    assert chat(client, stop=["}"]).status_code == 200
    assert "}" in engine.params[-1].stop


def test_seed_plus_i_never_becomes_the_random_seed(client: TestClient, engine: FakeEngine) -> None:
    assert chat(client, n=2, seed=2**32 - 2, temperature=1).status_code == 200
    assert sorted(p.seed for p in engine.params[-2:]) == [0, 2**32 - 2]
