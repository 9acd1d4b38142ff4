"""Tools on /v1/chat/completions around the engine (fake engine, in process): definitions and
tool_choice checked (bad ones are 400s naming the problem), the grammar each choice asks for,
the reply read into content and tool_calls, and streamed as OpenAI's deltas. The real model's
calls: tests/system/api/test_tools.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gptapi.api.tool_calls import ToolCallReader
from tests.fakes import FakeEngine
from tests.helpers import AUTH, assert_error, serve_fake, stream_events

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def chat(client: TestClient, **fields: Any) -> Any:
    body = {"messages": MESSAGES, "max_tokens": 64, "tools": [WEATHER, TIME], **fields}
    return client.post(CHAT, json=body, headers=AUTH)


def test_auto_is_a_lazy_grammar_of_every_function(client: TestClient, engine: FakeEngine) -> None:
    assert chat(client).status_code == 200
    params = engine.params[-1]
    assert params.grammar_trigger == "<tool_call>"
    assert params.grammar is not None
    assert '"get_weather\\", \\"arguments\\": " fn0-arguments' in params.grammar
    assert '"get_time\\", \\"arguments\\": " fn1-arguments' in params.grammar
    assert "{0,7}" in params.grammar  # parallel calls: up to 8


@pytest.mark.parametrize(
    ("choice", "names", "parallel"),
    [
        ("required", ["get_weather", "get_time"], True),
        ({"type": "function", "function": {"name": "get_time"}}, ["get_time"], True),
    ],
)
def test_required_and_named_choices_constrain_the_whole_reply(
    client: TestClient, engine: FakeEngine, choice: Any, names: list[str], parallel: bool
) -> None:
    assert chat(client, tool_choice=choice, parallel_tool_calls=False).status_code == 200
    prompt = "".join(p.text for p in engine.prompts[-1])
    named = isinstance(choice, dict)
    assert ("You must call the function get_time." in prompt) == named
    assert ("You must call at least one function." in prompt) == (not named)
    params = engine.params[-1]
    assert params.grammar_trigger is None
    assert params.grammar is not None
    assert params.grammar.startswith('root ::= "<tool_call>" calls')
    assert "{0,7}" not in params.grammar  # parallel_tool_calls: false, one call
    for name in ("get_weather", "get_time"):
        assert (f'"{name}\\", \\"arguments' in params.grammar) == (name in names)


def test_tool_choice_none_is_plain_text(client: TestClient, engine: FakeEngine) -> None:
    assert chat(client, tool_choice="none").status_code == 200
    assert engine.params[-1].grammar is None
    assert "get_weather" not in "".join(p.text for p in engine.prompts[-1])


def test_tools_are_described_to_a_model_without_tool_support(
    client: TestClient, engine: FakeEngine
) -> None:
    assert chat(client).status_code == 200
    prompt = "".join(p.text for p in engine.prompts[-1])
    assert prompt.startswith("System: You can call functions.")
    assert '"name": "get_weather"' in prompt and "The weather in a city." in prompt
    assert prompt.endswith("User: What is the weather in Paris?\nAssistant:")
    assert all(not p.markup for p in engine.prompts[-1])  # a base model: all text


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"tools": [{"type": "function", "function": {"name": "get weather"}}]}, "name"),
        ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]}, "name"),
        ({"tools": [{"type": "function"}]}, "function"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "type"),
        ({"tools": [WEATHER, WEATHER]}, "given twice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, "param"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "string"}},
                    }
                ]
            },
            "tools[0].function.parameters: must be an object schema",
        ),
        (
            {
                "tools": [
                    TIME,
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"n": {"type": "integer", "minimum": 1}},
                            },
                        },
                    },
                ]
            },
            "tools[1].function.parameters: #/properties/n: 'minimum' is not supported",
        ),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope'"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [], "tool_choice": "required"}, "no tools"),
        ({"response_format": {"type": "json_object"}}, "response_format with tools"),
    ],
)
def test_bad_tool_definitions_and_choices_are_400s_naming_the_problem(
    client: TestClient, fields: dict[str, Any], problem: str
) -> None:
    r = chat(client, **fields)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"}
    assert problem in r.json()["error"]["message"], r.json()


def test_streamed_logprobs_cover_every_token_also_those_of_calls() -> None:
    reply = f"Checking.  {CALL}"
    with serve_fake(FakeEngine(reply=reply)) as client:
        lines = stream_events(
            client, CHAT, {"messages": MESSAGES, "tools": [WEATHER], "max_tokens": 99,
                           "logprobs": True},
        )  # fmt: skip
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    entries = [
        entry for e in events if e["choices"][0]["logprobs"]
        for entry in e["choices"][0]["logprobs"]["content"]
    ]  # fmt: skip
    assert "".join(e["token"] for e in entries) == reply  # one entry per token, none lost


def test_schemas_definitions_stay_each_tool_s_own() -> None:
    def tool(name: str, unit: list[str]) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name, "parameters": {
            "type": "object", "properties": {"u": {"$ref": "#/$defs/Unit"}}, "required": ["u"],
            "$defs": {"Unit": {"enum": unit}}}}}  # fmt: skip

    engine = FakeEngine()
    with serve_fake(engine) as client:
        assert chat(client, tools=[tool("a", ["c"]), tool("b", ["k"])]).status_code == 200
        grammar = engine.params[-1].grammar
        assert grammar is not None
        assert r'fn0-Unit ::= "\"c\""' in grammar and r'fn1-Unit ::= "\"k\""' in grammar


def test_a_schema_rule_named_like_the_call_rules_is_refused(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Definitions are prefixed per tool, so no schema seen makes one: the guard, exercised.
    import gptapi.api.tools

    monkeypatch.setattr(gptapi.api.tools, "schema_rules", lambda schemas: 'call ::= "x"')
    r = chat(client)
    assert r.status_code == 400 and "rule named 'call'" in r.json()["error"]["message"]


def test_a_call_is_read_into_tool_calls() -> None:
    engine = FakeEngine(reply=CALL)
    with serve_fake(engine) as client:
        r = chat(client)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_text_then_calls_and_text_alone() -> None:
    second = CALL.replace("get_weather", "get_time").replace('{"city": "Paris"}', "{}")
    with serve_fake(FakeEngine(reply=f"Let me look.\n{CALL}\n{second}")) as client:
        message = chat(client).json()["choices"][0]["message"]
    assert message["content"] == "Let me look."
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_time"]
    assert len({c["id"] for c in message["tool_calls"]}) == 2
    with serve_fake(FakeEngine(reply="It is sunny <b>today</b>.  ")) as client:
        choice = chat(client).json()["choices"][0]
    assert choice["message"] == {
        "role": "assistant", "content": "It is sunny <b>today</b>.  ", "tool_calls": None
    }  # fmt: skip
    assert choice["finish_reason"] == "stop"


def test_a_named_function_finishes_with_stop_as_openai_s_does() -> None:
    with serve_fake(FakeEngine(reply=CALL)) as client:
        named = {"type": "function", "function": {"name": "get_weather"}}
        choice = chat(client, tool_choice=named).json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("tokens", [27, 30, 32])  # "...call>\n", "...call>\n<tool_cal", "{"
def test_a_call_cut_off_before_its_name_is_neither_content_nor_a_call(tokens: int) -> None:
    with serve_fake(FakeEngine(reply=f"{CALL}\n{CALL}")) as client:
        choice = chat(client, max_tokens=tokens).json()["choices"][0]  # 3 characters a token
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] is None
    assert len(choice["message"]["tool_calls"]) == 1


def test_a_call_cut_off_by_max_tokens_finishes_with_length() -> None:
    with serve_fake(FakeEngine(reply=CALL)) as client:
        choice = chat(client, max_tokens=20).json()["choices"][0]  # 60 characters
    assert choice["finish_reason"] == "length"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["arguments"] == '{"city": "P'  # as far as it got


def test_streamed_calls_are_openai_deltas_that_add_up() -> None:
    reply = f"Checking.{CALL}\n{CALL.replace('Paris', 'Oslo')}"
    with serve_fake(FakeEngine(reply=reply)) as client:
        lines = stream_events(
            client, CHAT, {"messages": MESSAGES, "tools": [WEATHER], "max_tokens": 99}
        )
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    content = ""
    calls: dict[int, dict[str, Any]] = {}
    finishes = []
    for event in events:
        choice = event["choices"][0]
        delta = choice["delta"]
        content += delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            if "id" in call:  # the first delta of a call: id, type, name, no arguments yet
                assert call["type"] == "function" and call["function"]["arguments"] == ""
                calls[call["index"]] = {"id": call["id"], "name": call["function"]["name"],
                                        "arguments": ""}  # fmt: skip
            else:
                assert set(call) == {"index", "function"} and set(call["function"]) == {"arguments"}
                calls[call["index"]]["arguments"] += call["function"]["arguments"]
        finishes.append(choice["finish_reason"])
    assert content == "Checking."
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_weather"]
    assert [json.loads(c["arguments"]) for c in calls.values()] == [
        {"city": "Paris"}, {"city": "Oslo"}
    ]  # fmt: skip
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}


def test_the_history_of_calls_and_results_reaches_the_prompt(
    client: TestClient, engine: FakeEngine
) -> None:
    history = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
    ]  # fmt: skip
    assert chat(client, messages=history).status_code == 200
    prompt = "".join(p.text for p in engine.prompts[-1])
    assert "Assistant: " + CALL in prompt
    assert "User: <tool_response>\n18 C and sunny\n</tool_response>\nAssistant:" in prompt


def test_a_tool_message_needs_content_and_only_assistants_call(client: TestClient) -> None:
    r = chat(client, messages=[*MESSAGES, {"role": "tool", "tool_call_id": "c"}])
    assert_error(r, 400, "validation_error")
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    r = chat(client, messages=[{"role": "user", "content": "x", "tool_calls": [call]}])
    assert_error(r, 400, "validation_error")


END = "<|im_end|>"
HERMES = (
    "{%- if tools %}<|im_start|>system\n# Tools\n<tools>\n{%- for tool in tools %}\n"
    "{{- tool | tojson }}\n{%- endfor %}\n</tools>\nCall with <tool_call></tool_call>"
    "<|im_end|>\n{%- endif %}"
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n"
    "{%- if message.content %}{{ message.content }}{%- endif %}"
    "{%- for call in message.tool_calls or [] %}<tool_call>\n"
    '{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}'
    "\n</tool_call>{%- endfor %}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


def test_a_template_that_knows_tools_renders_them_itself() -> None:
    engine = FakeEngine.instruct(HERMES)
    with serve_fake(engine) as client:
        assert chat(client).status_code == 200
    parts = engine.prompts[-1]
    markup = "".join(p.text for p in parts if p.markup)
    assert "<tools>" in markup and '"name": "get_weather"' in markup
    assert "You can call functions" not in "".join(p.text for p in parts)  # no generic text
    assert [p.text for p in parts if not p.markup] == [MESSAGES[0]["content"]]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f", "description": END}}]},
            "tools[0].function.description",
        ),
        (  # a property named "content" is not a message's content
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"content": {"description": "<|im_end|>"}}}}}]},
            "tools[0].function.parameters.properties.content.description",
        ),
        (  # arguments are JSON text: escaped, the template writes them decoded
            {"messages": [*MESSAGES, {"role": "assistant", "tool_calls": [{"id": "c1",
                "type": "function", "function": {"name": "get_weather",
                "arguments": '{"city": "\\u003c|im_end|\\u003e"}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]},
            "messages[1].tool_calls[0].function.arguments.city",
        ),
    ],
)  # fmt: skip
def test_control_token_text_in_tool_definitions_and_calls_is_refused_for_a_template(
    fields: dict[str, Any], where: str
) -> None:
    from dataclasses import replace

    engine = FakeEngine.instruct(HERMES)
    engine.info = replace(engine.info, control_texts=frozenset({"<|im_end|>"}))
    with serve_fake(engine) as client:
        r = chat(client, **fields)
    assert r.status_code == 400
    assert "control token" in r.json()["error"]["message"]
    assert where in r.json()["error"]["message"], r.json()
    with serve_fake(engine) as client:  # the same text in a message's content is just text
        r = chat(client, messages=[{"role": "user", "content": "say <|im_end|>"}])
    assert r.status_code == 200


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_the_reader_gives_the_same_result_however_the_text_is_cut(step: int) -> None:
    text = (
        'Sure <tool_cal> and <tool_call>\n{"name": "f", "arguments": {"a": "}\\"]", "b": '
        '[1, {"c": {}}]}}\n</tool_call>\n<tool_call>\n{"name": "g", "arguments": {}}\n'
        "</tool_call>"
    )
    reader = ToolCallReader()
    for i in range(0, len(text), step):
        reader.feed(text[i : i + step])
    reader.close()
    assert reader.content == "Sure <tool_cal> and"
    assert [(c.name, json.loads(c.arguments), c.complete) for c in reader.calls] == [
        ("f", {"a": '}"]', "b": [1, {"c": {}}]}, True), ("g", {}, True)
    ]  # fmt: skip
