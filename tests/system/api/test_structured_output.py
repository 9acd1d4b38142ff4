"""Structured output on the real model: for 20 schemas the grammar-constrained answer parses and
validates whenever it finishes with "stop"; the openai SDK's ``.parse()`` gets its Pydantic
object; ``json_object`` gives a JSON object; the task endpoints take ``json_schema`` too."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import API_KEY, LiveServer

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMAS: list[dict[str, Any]] = [
    PERSON,
    {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 5},
    {"type": "string", "enum": ["red", "green", "blue"]},
    {"type": "object", "properties": {"color": {"enum": ["red", "green"]}},
     "required": ["color"], "additionalProperties": False},
    {"type": "number"},
    {"type": "object", "properties": {"price": {"type": "number"},
     "currency": {"const": "EUR"}}, "required": ["price", "currency"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string",
     "maxLength": 12}, "maxItems": 3}}, "required": ["tags"], "additionalProperties": False},
    {"type": "object", "properties": {"address": {"type": "object", "properties": {
     "city": {"type": "string", "maxLength": 30}, "zip": {"type": "string",
     "pattern": "^[0-9]{5}$"}}, "required": ["city", "zip"], "additionalProperties": False}},
     "required": ["address"], "additionalProperties": False},
    {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
    {"type": "string", "format": "date"},
    {"type": "string", "format": "uuid"},
    {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    {"type": ["string", "null"], "maxLength": 20},
    {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"},
     "y": {"type": "integer"}}, "required": ["x", "y"], "additionalProperties": False}},
     "type": "object", "properties": {"a": {"$ref": "#/$defs/pt"}, "b": {"$ref": "#/$defs/pt"}},
     "required": ["a", "b"], "additionalProperties": False},
    {"type": "array", "prefixItems": [{"type": "string", "maxLength": 10},
     {"type": "integer"}]},
    {"type": "object", "properties": {"name": {"type": "string", "minLength": 2,
     "maxLength": 8}, "nick": {"type": "string", "maxLength": 8}}, "required": ["name"],
     "additionalProperties": False},
    {"type": "boolean"},
    {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object",
     "properties": {"sku": {"type": "string", "maxLength": 8}, "qty": {"type": "integer"}},
     "required": ["sku", "qty"], "additionalProperties": False}, "maxItems": 3}},
     "required": ["items"], "additionalProperties": False},
    {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]},
               {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
]  # fmt: skip


def test_twenty_schemas_give_answers_that_parse_and_validate(live_server: LiveServer) -> None:
    assert len(SCHEMAS) == 20

    async def ask(i: int, schema: dict[str, Any]) -> tuple[int, str, str]:
        oai = openai.AsyncOpenAI(base_url=f"{live_server.base_url}/v1", api_key=API_KEY,
                                 timeout=300)  # fmt: skip
        fmt = {"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema}}
        r = await oai.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": f"Answer in JSON. Example {i}:"}],
            max_tokens=160,
            temperature=0 if i % 2 == 0 else 1.0,
            seed=i,
            response_format=fmt,  # type: ignore[arg-type]
        )
        return i, r.choices[0].finish_reason, r.choices[0].message.content or ""

    async def all_of_them() -> list[tuple[int, str, str]]:
        return list(await asyncio.gather(*(ask(i, s) for i, s in enumerate(SCHEMAS))))

    stopped = 0
    for i, finish, text in asyncio.run(all_of_them()):
        if finish == "stop":
            stopped += 1
            jsonschema.validate(json.loads(text), SCHEMAS[i])  # raises when it does not hold
        else:
            assert finish == "length", (i, finish)
    # Bounded schemas end well within 160 tokens; the rest may run out of tokens, which the
    # response says ("length") rather than returning invalid JSON as "stop".
    assert stopped >= 15, stopped


class Person(BaseModel):
    name: str
    age: int


def test_the_openai_sdks_parse_gets_its_pydantic_object(live_server: LiveServer) -> None:
    oai = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key=API_KEY, timeout=120)
    completion = oai.chat.completions.parse(
        model="m",
        messages=[{"role": "user", "content": "A person: name Ada, age 36."}],
        response_format=Person,
        max_tokens=60,
        temperature=0,
    )
    message = completion.choices[0].message
    if completion.choices[0].finish_reason == "stop":
        assert isinstance(message.parsed, Person)


def test_json_object_mode_and_the_task_endpoints(live_server: LiveServer) -> None:
    with live_server.client() as c:
        r = c.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "Describe a cat in JSON."}],
            "response_format": {"type": "json_object"}, "max_tokens": 120, "temperature": 0,
        })  # fmt: skip
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["message"]["content"]), dict)
        r = c.post("/answer-question", json={
            "question": "What is the access code?", "context": "The access code is 7731.",
            "json_schema": {"type": "object", "properties": {"code": {"type": "integer"}},
                            "required": ["code"], "additionalProperties": False},
            "max_tokens": 40,
        })  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["finish_reason"] == "stop", body
        assert isinstance(json.loads(body["text"])["code"], int)


def test_a_streamed_structured_answer_is_the_same_json(live_server: LiveServer) -> None:
    body = {"prompt": "Person:", "json_schema": PERSON, "max_tokens": 60}
    with live_server.client() as c:
        plain = c.post("/generate-text", json=body).json()
        with c.stream("POST", "/generate-text", json={**body, "stream": True}) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines()
                      if line.startswith("data: {")]  # fmt: skip
    streamed = "".join(e.get("text", "") for e in events)
    assert streamed == plain["text"]
    if plain["finish_reason"] == "stop":
        jsonschema.validate(json.loads(plain["text"]), PERSON)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/generate-text"])
def test_a_bad_schema_is_a_400_before_any_work(live_server: LiveServer, path: str) -> None:
    schema = {"type": "integer", "minimum": 1}
    if path == "/generate-text":
        body: dict[str, Any] = {"prompt": "x", "json_schema": schema}
    else:
        body = {"messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "n", "schema": schema}}}  # fmt: skip
    with httpx.Client(base_url=live_server.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as c:  # fmt: skip
        r = c.post(path, json=body)
    assert r.status_code == 400
    assert "minimum" in r.json()["error"]["message"]
