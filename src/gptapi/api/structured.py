"""Structured output as requests ask for it: OpenAI's ``response_format`` on ``/v1`` (``text``,
``json_object``, ``json_schema`` strict or not) and ``json_schema`` on the task endpoints, turned
into the grammar the engine constrains the sequence with. A schema that uses what the grammar
cannot enforce is a 400 naming the keyword and where it is (``engine.grammar``)."""

from __future__ import annotations

import asyncio
from typing import Any

from gptapi.engine import Engine
from gptapi.engine.grammar import JSON_OBJECT_GRAMMAR, UnsupportedSchema, json_schema_grammar
from gptapi.errors import UnsupportedParameter


def response_format_grammar(response_format: Any) -> str | None:
    """The grammar for /v1's ``response_format``, None for plain text."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise _bad("must be an object with a 'type'")
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_GRAMMAR
    if kind != "json_schema":
        raise _bad(f"type {kind!r} is not one of 'text', 'json_object', 'json_schema'")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict | bool):
        raise _bad("json_schema must be an object with a 'schema' object")
    # OpenAI allows json_schema without a schema: then any JSON object.
    schema = spec.get("schema")
    return JSON_OBJECT_GRAMMAR if schema is None else schema_grammar(schema, "response_format")


def schema_grammar(schema: Any, param: str) -> str:
    try:
        return json_schema_grammar(schema)
    except UnsupportedSchema as exc:
        raise UnsupportedParameter(f"{param}: {exc}", param=param) from None


async def check_grammar(engine: Engine, grammar: str | None, param: str) -> None:
    """Let llama.cpp parse the grammar now, so a problem is a 400 and not a failed stream."""
    if grammar is None:
        return
    try:
        await asyncio.to_thread(engine.check_grammar, grammar)
    except ValueError as exc:
        raise UnsupportedParameter(f"{param}: {exc}", param=param) from None


def _bad(message: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"response_format: {message}", param="response_format")
