"""JSON Schema -> GBNF (no model): the supported subset is converted, the rest refused naming
where it is, and the converter's gaps are closed (strings without raw control characters, type
lists that keep their other keywords)."""

from __future__ import annotations

import pytest

from gptapi.engine.grammar import (
    JSON_OBJECT_GRAMMAR,
    UnsupportedSchema,
    json_schema_grammar,
)


def test_strings_exclude_the_control_characters_json_forbids_in_them() -> None:
    for schema in ({"type": "string"}, {"type": "string", "pattern": "^a.b$"}):
        grammar = json_schema_grammar(schema)
        assert "\\x00-\\x1F" in grammar, grammar
        assert 'char ::= [^"\\\\] |' not in grammar
    assert "\\x00-\\x1F" in JSON_OBJECT_GRAMMAR


def test_a_type_list_keeps_its_other_keywords() -> None:
    grammar = json_schema_grammar({"type": ["string", "null"], "maxLength": 3})
    assert "(char (char (char)?)?)?" in grammar and '"null"' in grammar


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "object", "properties": {"a": {"minimum": 1}}}, "#/properties/a: 'minimum'"),
        ({"items": {"uniqueItems": True}}, "#/items: 'uniqueItems'"),
        ({"oneOf": [{"type": "string"}]}, "'oneOf'"),
        ({"type": "string", "format": "email"}, "format 'email'"),
        ({"$ref": "other.json#/x"}, "local references"),
        (False, "allows nothing"),
        ({"maxItems": -1}, "maxItems"),
        ({"type": "string", "pattern": "^a{0,200000}$"}, "repetition counts above 512"),
        ({"type": "string", "maxLength": 10000}, "0 to 512"),
        ({"allOf": [{"type": "string"}]}, "allOf parts must be objects"),
        ({"type": "object", "required": ["a"]}, "'required' without 'properties'"),
        ({"type": "array", "maxItems": 3}, "'maxItems' without 'items'"),
        ({"type": "string", "pattern": "a", "maxLength": 3}, "'pattern' beside"),
        ({"$ref": "#/$defs/a", "minLength": 1, "$defs": {"a": {}}}, "'\\$ref' beside"),
        ({"type": "object", "properties": {"a": True}}, "boolean schema"),
    ],
)
def test_what_the_grammar_cannot_enforce_is_refused_naming_it(schema: object, where: str) -> None:
    with pytest.raises(UnsupportedSchema, match=where.replace("(", r"\(")):
        json_schema_grammar(schema)  # type: ignore[arg-type]


def test_a_pydantic_models_schema_is_supported() -> None:
    from pydantic import BaseModel, Field

    class Address(BaseModel):
        city: str

    class Person(BaseModel):
        name: str = Field(description="the full name")
        age: int | None = None
        address: Address = Field(description="where")
        tags: list[str] = []

    assert "root ::=" in json_schema_grammar(Person.model_json_schema())
