"""Tools on the real model, as clients use them: the openai SDK (create, stream, ``.parse`` with
``pydantic_function_tool``) and LangChain's ``bind_tools``. The embedded model is a base model
with no chat template, so it gets the generic format (tools described in a system turn); every
call's arguments must validate against its function's schema, since the grammar held them."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, Field

from tests.conftest import API_KEY, LiveServer

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": WEATHER_PARAMETERS,
    },
}
TIME_PARAMETERS = {
    "type": "object",
    "properties": {"zone": {"type": "string", "maxLength": 40}, "precise": {"type": "boolean"}},
    "required": ["zone"],
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": TIME_PARAMETERS},
}
SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# The base model continues a pattern: after one call-and-answer turn it calls again.
FEW_SHOT = [
    {"role": "user", "content": "What is the weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "celsius"}'},
    }]},
    {"role": "tool", "tool_call_id": "call_1", "content": "5 C, rain"},
    {"role": "assistant", "content": "It is 5 C and raining in Oslo."},
    {"role": "user", "content": "What is the weather in Rome?"},
]  # fmt: skip


def valid_calls(choice: Any) -> list[tuple[str, dict[str, Any]]]:
    """Each call's name and arguments, checked against its function's schema (all but the last
    when max_tokens cut the reply: that one is as far as it got)."""
    calls = []
    made = choice.message.tool_calls or []
    for call in made[:-1] if choice.finish_reason == "length" else made:
        assert call.type == "function" and call.id.startswith("call_")
        arguments = json.loads(call.function.arguments)
        jsonschema.validate(arguments, SCHEMAS[call.function.name])
        calls.append((call.function.name, arguments))
    return calls


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        ("required", {"get_weather", "get_time"}),
        ({"type": "function", "function": {"name": "get_time"}}, {"get_time"}),
    ],
)
def test_a_required_call_has_arguments_valid_for_its_schema(
    oai: Any, choice: Any, names: set[str]
) -> None:
    for seed in (1, 2, 3):  # sampled too: the grammar, not luck, makes them valid
        response = oai.chat.completions.create(
            model="gptapi", messages=ASK, tools=[WEATHER, TIME], tool_choice=choice,
            parallel_tool_calls=False, temperature=1, seed=seed, max_tokens=120,
        )  # fmt: skip
        choice_ = response.choices[0]
        # OpenAI's: "stop" when the request named the function, else "tool_calls".
        assert choice_.finish_reason == ("stop" if len(names) == 1 else "tool_calls"), choice_
        [(name, _)] = valid_calls(choice_)
        assert name in names
        assert choice_.message.content is None


def test_auto_answers_in_text_or_calls_with_valid_arguments(oai: Any) -> None:
    reply = oai.chat.completions.create(
        model="gptapi", messages=FEW_SHOT, tools=[WEATHER, TIME], temperature=0, max_tokens=80,
        parallel_tool_calls=False,
    )  # fmt: skip
    choice = reply.choices[0]
    # Greedy, this model copies the pattern: it calls (the trigger made the grammar apply).
    assert choice.finish_reason == "tool_calls", choice
    assert valid_calls(choice)[0][0] == "get_weather"
    for seed in range(4):  # sampled: text or calls, and calls always valid
        reply = oai.chat.completions.create(
            model="gptapi", messages=FEW_SHOT, tools=[WEATHER, TIME], temperature=1.2,
            seed=seed, max_tokens=60,
        )  # fmt: skip
        choice = reply.choices[0]
        calls = valid_calls(choice)
        assert choice.finish_reason in ("stop", "length", "tool_calls")
        assert bool(calls) >= (choice.finish_reason == "tool_calls")


def test_streamed_calls_add_up_to_the_same_calls(oai: Any) -> None:
    common: dict[str, Any] = {
        "model": "gptapi", "messages": FEW_SHOT, "tools": [WEATHER, TIME], "temperature": 0,
        "max_tokens": 80,
    }  # fmt: skip
    whole = oai.chat.completions.create(**common)
    calls: dict[int, dict[str, str]] = {}
    content, finish = "", None
    for chunk in oai.chat.completions.create(**common, stream=True):
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    expected = [
        {"name": c.function.name, "arguments": c.function.arguments}
        for c in whole.choices[0].message.tool_calls or []
    ]
    assert expected  # the greedy reply calls (see above)
    assert list(calls.values()) == expected
    assert finish == whole.choices[0].finish_reason
    assert (content or None) == whole.choices[0].message.content


def test_a_call_and_its_result_go_back_into_the_conversation(oai: Any) -> None:
    first = oai.chat.completions.create(
        model="gptapi", messages=ASK, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=60,
    )  # fmt: skip
    message = first.choices[0].message
    [call] = message.tool_calls
    history = [
        *ASK,
        message.model_dump(exclude_none=True),  # as the SDK's users append it
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
    ]
    second = oai.chat.completions.create(
        model="gptapi", messages=history, tools=[WEATHER], tool_choice="none", temperature=0,
        max_tokens=16,
    )  # fmt: skip
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].message.content


class GetTime(BaseModel):
    """The time in a time zone."""

    zone: str = Field(description="An IANA zone, e.g. Europe/Paris", max_length=40)
    precise: bool


def test_sdk_parse_with_a_pydantic_function_tool(oai: Any) -> None:
    import openai

    completion = oai.chat.completions.parse(
        model="gptapi", messages=[{"role": "user", "content": "What time is it in Paris?"}],
        tools=[openai.pydantic_function_tool(GetTime)], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=60,
    )  # fmt: skip
    [call] = completion.choices[0].message.tool_calls
    assert isinstance(call.function.parsed_arguments, GetTime)  # strict tools: the SDK parses


def test_langchain_bind_tools(live_server: LiveServer) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str, unit: str) -> str:
        """Current weather in a city; unit is celsius or fahrenheit."""
        return "18"

    model = ChatOpenAI(
        base_url=f"{live_server.base_url}/v1", api_key=API_KEY, model="gptapi",  # type: ignore[arg-type]
        temperature=0, max_tokens=60, timeout=120,
    )  # fmt: skip
    bound = model.bind_tools([get_weather], tool_choice="get_weather", parallel_tool_calls=False)
    reply = bound.invoke("What is the weather in Paris?")
    [call] = reply.tool_calls
    assert call["name"] == "get_weather"
    assert isinstance(call["args"]["city"], str) and isinstance(call["args"]["unit"], str)
    assert reply.response_metadata["finish_reason"] == "stop"  # named, as OpenAI answers
