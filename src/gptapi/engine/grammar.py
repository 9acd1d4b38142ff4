"""Structured output: JSON Schema (and "any JSON object") as llama.cpp grammars (GBNF).

The conversion is llama.cpp's own (``json-schema-to-grammar``, shipped in llama-cpp-python as
``llama_grammar.SchemaConverter``). It silently ignores some keywords (``minimum``,
``uniqueItems``, unknown ``format`` values, ...), which would let output through that does not
validate. So a schema is first checked here against the subset the grammar enforces exactly;
anything else is refused with ``UnsupportedSchema`` naming the keyword and where it is, rather
than promised and not kept. What is supported is listed in ``SUPPORTED_KEYWORDS`` and
``SUPPORTED_FORMATS`` (docs: README, "Structured output").
"""

from __future__ import annotations

import json
import re
from typing import Any

from llama_cpp import llama_grammar

# Keywords whose meaning the grammar enforces exactly (or that only annotate).
SUPPORTED_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems",
        "minItems", "maxItems", "enum", "const", "anyOf", "allOf", "$ref", "$defs",
        "definitions", "pattern", "format", "minLength", "maxLength",
        # annotations: no effect on what is valid
        "title", "description", "default", "examples", "$schema", "$id", "$comment",
        "deprecated", "readOnly", "writeOnly", "strict",
    }
)  # fmt: skip
SUPPORTED_FORMATS = frozenset({"date", "time", "date-time", "uuid"})
_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_MAX_SCHEMA_BYTES = 64 * 1024
_MAX_GRAMMAR_BYTES = 256 * 1024

# Any JSON object (OpenAI's response_format {"type": "json_object"}).
JSON_OBJECT_GRAMMAR: str = llama_grammar.JSON_GBNF


class UnsupportedSchema(ValueError):
    """The schema uses what the grammar cannot enforce, or is not a valid schema."""

    schema = ""  # which of several schemas (``schema_rules``)


def json_schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar of the JSON values ``schema`` describes."""
    return schema_rules({"": schema})


def schema_rules(schemas: dict[str, Any]) -> str:
    """GBNF rules for several schemas at once, each the rule of its name ("" is ``root``), with
    the rules they have in common written once. Each schema's ``$ref`` resolves within itself."""
    if len(json.dumps(schemas)) > _MAX_SCHEMA_BYTES:
        raise UnsupportedSchema(f"the schema is larger than {_MAX_SCHEMA_BYTES} bytes")
    converter = llama_grammar.SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    for name, schema in schemas.items():
        try:
            _check(schema, "#")
            _convert(converter, schema, name)
        except UnsupportedSchema as exc:
            exc.schema = name
            raise
    grammar: str = converter.format_grammar()  # type: ignore[no-untyped-call]
    # This converter's string characters allow raw control characters, which JSON forbids
    # inside strings (a newline in a string made the output unparseable): JSON's own set.
    for rule, json_char in _JSON_CHARACTERS.items():
        grammar = grammar.replace(rule, json_char)
    if len(grammar) > _MAX_GRAMMAR_BYTES:
        # llama.cpp prints a grammar it cannot parse to stderr: keep them small and few.
        raise UnsupportedSchema(f"the schema makes a grammar over {_MAX_GRAMMAR_BYTES} bytes")
    return grammar


def _convert(converter: Any, schema: Any, name: str) -> None:
    try:
        plain = _split_type_lists(_without_annotations(schema))
        resolved = converter.resolve_refs(plain, f"schema-{name}")
        converter.visit(resolved, name)
    except Exception as exc:  # a converter of client input: any failure is the schema's
        raise UnsupportedSchema(
            f"the schema cannot be turned into a grammar ({type(exc).__name__})"
        ) from None


_UNESCAPED = r'[^"\\\x7F\x00-\x1F]'
_JSON_CHARACTERS = {
    'char ::= [^"\\\\] |': f"char ::= {_UNESCAPED} |",
    "dot ::= [^\\x0A\\x0D]": f"dot ::= {_UNESCAPED}",
}


_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id",
    "$comment", "deprecated", "readOnly", "writeOnly", "strict"})  # fmt: skip
_SCHEMA_MAPS = ("properties", "$defs", "definitions")  # name -> schema
_SCHEMA_LISTS = ("anyOf", "allOf", "prefixItems")
_SCHEMAS = ("items", "additionalProperties")


def _without_annotations(schema: Any) -> Any:
    """The schema without keywords that only annotate (``description``, ``title``, ...): the
    converter takes ``{"description": ...}`` for a schema it does not know, where JSON Schema
    means any value. Walks schema positions only: a property named "title" stays."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            value = {name: _without_annotations(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            value = [_without_annotations(sub) for sub in value]
        elif key in _SCHEMAS:
            value = _without_annotations(value)
        out[key] = value
    return out


def _split_type_lists(schema: Any) -> Any:
    """``{"type": [a, b], ...}`` as ``{"anyOf": [{"type": a, ...}, {"type": b, ...}]}``: the
    converter turns a type list into a union of bare types and drops every other keyword
    (``maxLength`` on ``["string", "null"]`` was lost). Keywords of another type are ignored by
    each branch, as JSON Schema ignores them."""
    if isinstance(schema, list):
        return [_split_type_lists(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _split_type_lists(value) for key, value in schema.items()}
    types = out.get("type")
    if isinstance(types, list):
        rest = {key: value for key, value in out.items() if key != "type"}
        if len(types) == 1:
            return {**rest, "type": types[0]}
        return {"anyOf": [{**rest, "type": t} for t in types]}
    return out


# Beyond these the converter's nested optional groups pass llama.cpp's rule and recursion limits
# (a maxLength of 10000, or a{0,200000} in a pattern, made megabytes of grammar).
_MAX_COUNT = 512
_MAX_PATTERN_CHARS = 256
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_VALIDATING = frozenset(SUPPORTED_KEYWORDS - {"title", "description", "default", "examples",
    "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "strict", "$defs",
    "definitions"})  # fmt: skip
# Keywords the converter drops unless the one they depend on is in the same schema.
_NEEDS = {"required": "properties", "minItems": "items", "maxItems": "items"}


def _check(schema: Any, where: str) -> None:
    if isinstance(schema, bool):
        raise UnsupportedSchema(
            f"{where}: a boolean schema is not supported (use {{}} for any value)"
            if schema else f"{where}: the schema false allows nothing"
        )  # fmt: skip
    if not isinstance(schema, dict):
        raise UnsupportedSchema(f"{where}: a schema must be an object")
    _check_combination(schema, where)
    for keyword, value in schema.items():
        if keyword not in SUPPORTED_KEYWORDS:
            raise UnsupportedSchema(f"{where}: '{keyword}' is not supported")
        at = f"{where}/{keyword}"
        if keyword == "type":
            types = value if isinstance(value, list) else [value]
            if not types or any(t not in _TYPES for t in types):
                raise UnsupportedSchema(f"{at}: unknown type {value!r}")
        elif keyword == "format" and value not in SUPPORTED_FORMATS:
            raise UnsupportedSchema(f"{at}: the format {value!r} is not supported")
        elif keyword == "$ref" and not (isinstance(value, str) and value.startswith("#")):
            raise UnsupportedSchema(f"{at}: only local references (#/...) are supported")
        elif keyword in ("properties", "$defs", "definitions"):
            if not isinstance(value, dict):
                raise UnsupportedSchema(f"{at}: must be an object")
            for name, sub in value.items():
                _check(sub, f"{at}/{name}")
        elif keyword in ("anyOf", "allOf", "prefixItems"):
            if not isinstance(value, list) or not value:
                raise UnsupportedSchema(f"{at}: must be a non-empty array")
            for i, sub in enumerate(value):
                _check(sub, f"{at}/{i}")
        elif keyword == "items" or (keyword == "additionalProperties" and value is not True):
            if value is not False:
                _check(value, at)
        elif keyword == "pattern":
            if not isinstance(value, str) or len(value) > _MAX_PATTERN_CHARS:
                raise UnsupportedSchema(f"{at}: a pattern of at most {_MAX_PATTERN_CHARS} chars")
            for low, high in _QUANTIFIER.findall(value):
                if max(int(low), int(high or 0)) > _MAX_COUNT:
                    raise UnsupportedSchema(f"{at}: repetition counts above {_MAX_COUNT}")
        elif keyword == "required" and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise UnsupportedSchema(f"{at}: must be an array of property names")
        elif keyword == "enum" and not (isinstance(value, list) and value):
            raise UnsupportedSchema(f"{at}: must be a non-empty array")
        elif keyword in ("minItems", "maxItems", "minLength", "maxLength") and not (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT
        ):
            raise UnsupportedSchema(f"{at}: must be an integer from 0 to {_MAX_COUNT}")


def _check_combination(schema: dict[str, Any], where: str) -> None:
    """Keywords the converter honours only alone: together, it silently drops one of them."""
    validating = _VALIDATING & schema.keys()
    for keyword in ("$ref", "anyOf", "allOf"):
        if keyword in schema and validating - {keyword, "type"}:
            others = ", ".join(sorted(validating - {keyword, "type"}))
            raise UnsupportedSchema(f"{where}: '{keyword}' beside {others} is not supported")
    if "allOf" in schema:
        for i, part in enumerate(schema["allOf"] if isinstance(schema["allOf"], list) else []):
            if not isinstance(part, dict) or not {"properties", "$ref"} & part.keys():
                raise UnsupportedSchema(f"{where}/allOf/{i}: allOf parts must be objects")
    for keyword, needed in _NEEDS.items():
        if keyword in schema and needed not in schema:
            raise UnsupportedSchema(f"{where}: '{keyword}' without '{needed}' is not supported")
    if "pattern" in schema and {"minLength", "maxLength"} & schema.keys():
        raise UnsupportedSchema(f"{where}: 'pattern' beside minLength/maxLength is not supported")
