"""One rule for every string a client sends: walk every request model and prove each string
field, wherever it sits (top level, messages, content parts, stop lists), refuses NUL, ESC and
the other C0 controls but tab, newline and carriage return."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import AUTH, assert_error, serve_fake

CHAT = "/v1/chat/completions"
JSON = {**AUTH, "Content-Type": "application/json"}
# A valid body per route, and for each string in it a path to set a bad value at.
CASES: list[tuple[str, dict[str, Any], list[tuple[Any, ...]]]] = [
    ("/generate-text", {"prompt": "hi", "stop": ["x"]}, [("prompt",), ("stop", 0)]),
    ("/summarize-text", {"text": "a text"}, [("text",)]),
    ("/answer-question", {"question": "q?", "context": "c."}, [("question",), ("context",)]),
    (
        "/v1/completions",
        {"prompt": "hi", "model": "m", "user": "u", "stop": "x", "suffix": None},
        [("prompt",), ("model",), ("user",), ("stop",)],
    ),
    (
        CHAT,
        {
            "model": "m",
            "user": "u",
            "stop": ["x"],
            "messages": [
                {"role": "user", "name": "alice", "content": "hi"},
                {"role": "user", "content": [{"type": "text", "text": "there"}]},
            ],
        },
        [
            ("model",), ("user",), ("stop", 0), ("messages", 0, "name"),
            ("messages", 0, "content"), ("messages", 1, "content", 0, "text"),
        ],
    ),
]  # fmt: skip


def with_value(body: dict[str, Any], where: tuple[Any, ...], value: str) -> dict[str, Any]:
    copy: Any = json.loads(json.dumps(body))
    target = copy
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    return dict(copy)


@pytest.fixture()
def client() -> Iterator[TestClient]:
    with serve_fake() as c:
        yield c


@pytest.mark.parametrize(("path", "body", "places"), CASES)
def test_every_string_field_refuses_control_characters(
    client: TestClient, path: str, body: dict[str, Any], places: list[tuple[Any, ...]]
) -> None:
    assert client.post(path, json=body, headers=AUTH).status_code == 200
    status = 400 if path.startswith("/v1/") else 422
    for where in places:
        for bad in ("a\x00b", "a\x1b[31mb", "a\x7fb", "a\udfffb"):
            # json.dumps escapes the lone surrogate as \udfff, as a client's JSON would.
            content = json.dumps(with_value(body, where, bad)).encode()
            r = client.post(path, content=content, headers=JSON)
            assert r.status_code == status, (where, repr(bad), r.text)
            assert_error(r, status, "validation_error")
        fine = with_value(body, where, "tab\tnewline\nreturn\r ok")
        assert client.post(path, json=fine, headers=AUTH).status_code == 200, where
