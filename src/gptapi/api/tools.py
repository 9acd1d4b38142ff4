"""Tools on ``/v1/chat/completions``: what a request's ``tools`` and ``tool_choice`` ask for,
checked, and the grammar that holds the model's calls to it.

A call is written in the format ``prompts`` describes to the model (``<tool_call>`` blocks).
With ``tool_choice: "auto"`` the grammar is lazy: the model answers freely and, once it writes
``<tool_call>``, what follows must be a call of one of the functions with arguments valid
against its schema. With ``"required"`` or a named function the whole reply is calls. So
``arguments`` is always JSON that validates, whatever the model (``api.tool_calls`` reads them
back out of the text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gptapi.api.v1_schemas import ChatCompletionRequest, FunctionDefinition
from gptapi.engine.grammar import UnsupportedSchema, schema_rules
from gptapi.errors import InvalidRequest, UnsupportedParameter
from gptapi.prompts import (
    TOOL_CALL_ARGUMENTS,
    TOOL_CALL_END,
    TOOL_CALL_NAME,
    TOOL_CALL_OPEN,
)

MAX_PARALLEL_CALLS = 8
# No parameters: OpenAI's "a function with an empty parameter list".
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class ToolUse:
    """Tools in play for one request."""

    offered: tuple[FunctionDefinition, ...]  # shown to the model
    callable: tuple[FunctionDefinition, ...]  # what the grammar lets it call
    required: bool  # the reply is calls only (tool_choice required or a named function)
    named: bool  # tool_choice named the function
    parallel: bool

    @property
    def must_call(self) -> bool | str:
        """For the prompt: the function's name when named, else whether a call is required."""
        return self.callable[0].name if self.named else self.required

    def definitions(self) -> list[dict[str, Any]]:
        """The offered tools in OpenAI's shape, for the prompt."""
        return [
            {"type": "function", "function": f.model_dump(exclude_none=True)} for f in self.offered
        ]

    def grammar(self) -> tuple[str, str | None]:
        """The GBNF of the calls and, for ``auto``, the text that starts it (the trigger)."""
        # Every offered function's schema is checked, also those a named choice leaves out.
        schemas = {
            f"fn{i}-arguments": _own_definitions(f.parameters, f"fn{i}-")
            if f.parameters is not None
            else _NO_PARAMETERS
            for i, f in enumerate(self.offered)
        }
        try:
            rules = schema_rules(schemas)
        except UnsupportedSchema as exc:
            i = list(schemas).index(exc.schema) if exc.schema in schemas else 0
            where = f"tools[{i}].function.parameters"
            raise UnsupportedParameter(f"{where}: {exc}", param="tools") from None
        names = " | ".join(
            f"{_literal(f.name + TOOL_CALL_ARGUMENTS)} fn{i}-arguments"
            for i, f in enumerate(self.offered)
            if f in self.callable
        )
        clash = _OWN_RULES & {line.partition(" ::=")[0] for line in rules.splitlines()}
        if clash:  # a "$ref": "#/properties/call" names its rule "call": never two of one name
            raise UnsupportedParameter(
                f"tools: a schema makes a grammar rule named {sorted(clash)[0]!r}, which the "
                "tool-call grammar uses",
                param="tools",
            )
        call = f"call ::= {_literal(TOOL_CALL_NAME)} ({names}) {_literal(TOOL_CALL_END)}"
        more = MAX_PARALLEL_CALLS - 1 if self.parallel else 0
        calls = "calls ::= call" + (
            f' ("\\n" {_literal(TOOL_CALL_OPEN)} call){{0,{more}}}' if more else ""
        )
        if self.required:  # the reply is calls from its first token
            root, trigger = f"root ::= {_literal(TOOL_CALL_OPEN)} calls", None
        else:  # free text until the model writes the trigger; then calls
            root, trigger = "root ::= calls", TOOL_CALL_OPEN
        return "\n".join([root, calls, call, rules]), trigger


def tool_use(body: ChatCompletionRequest) -> ToolUse | None:
    """The request's tools, checked; None when no call can happen (no tools, or ``none``)."""
    if body.functions or body.function_call not in (None, "none", "auto"):
        raise UnsupportedParameter(
            "'functions' and 'function_call' (deprecated by OpenAI) are not supported: use "
            "'tools' and 'tool_choice'",
            param="functions" if body.functions else "function_call",
        )
    choice = body.tool_choice
    if not body.tools:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice: asks for a call, but no tools are given")
        return None
    functions = tuple(tool.function for tool in body.tools)
    names = [f.name for f in functions]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise InvalidRequest(f"tools: the function name {duplicate!r} is given twice")
    if choice == "none":
        return None
    callable_ = functions
    if choice is not None and not isinstance(choice, str):
        callable_ = tuple(f for f in functions if f.name == choice.function.name)
        if not callable_:
            raise InvalidRequest(
                f"tool_choice: the function {choice.function.name!r} is not among the tools"
            )
    for i, function in enumerate(functions):
        if function.parameters is not None and function.parameters.get("type") != "object":
            raise InvalidRequest(f"tools[{i}].function.parameters: must be an object schema")
    return ToolUse(
        offered=functions,
        callable=callable_,
        required=choice is not None and choice != "auto",
        named=choice is not None and not isinstance(choice, str),
        parallel=body.parallel_tool_calls,
    )


_OWN_RULES = frozenset({"root", "calls", "call"})
_DEFINITIONS = ("$defs", "definitions")


def _own_definitions(schema: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The schema with its definitions renamed ``prefix`` + name, references too: the converter
    names a definition's rule after it and reuses a rule of that name, so two tools' different
    ``$defs/Unit`` (pydantic writes such names) would share the first one's rule."""

    def rename(value: Any) -> Any:
        if isinstance(value, list):
            return [rename(item) for item in value]
        if not isinstance(value, dict):
            return value
        out = {key: rename(item) for key, item in value.items()}
        ref = out.get("$ref")
        if isinstance(ref, str):
            for where in _DEFINITIONS:
                head = f"#/{where}/"
                if ref.startswith(head):
                    out["$ref"] = head + prefix + ref[len(head) :]
        return out

    renamed: dict[str, Any] = rename(schema)
    for where in _DEFINITIONS:
        definitions = renamed.get(where)
        if isinstance(definitions, dict):
            renamed[where] = {prefix + name: sub for name, sub in definitions.items()}
    return renamed


def _literal(text: str) -> str:
    """A GBNF string literal (JSON's escapes are GBNF's)."""
    return json.dumps(text)
