"""Body rules: only UTF-8 JSON reaches a route. UTF-16 and UTF-32 bodies (which Python's JSON
parser would detect and accept) and other charsets are 400; a body that is not JSON by its
Content-Type is 415 on the task routes and 400 on /v1, as OpenAI's clients expect."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.helpers import AUTH, assert_error, serve_fake

BODY = {"prompt": "Hello there", "max_tokens": 2}
CHAT = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
ROUTES = [("/generate-text", BODY), ("/v1/completions", BODY), ("/v1/chat/completions", CHAT)]


@pytest.fixture()
def client() -> Iterator[TestClient]:
    with serve_fake() as c:
        yield c


def post(client: TestClient, path: str, content: bytes, content_type: str | None) -> object:
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post(path, content=content, headers=headers)


@pytest.mark.parametrize(("path", "body"), ROUTES)
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_a_body_in_another_unicode_encoding_is_400(
    client: TestClient, path: str, body: dict[str, object], encoding: str
) -> None:
    content = json.dumps(body).encode(encoding)
    assert_error(post(client, path, content, "application/json"), 400, "bad_request")


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_utf8_json_is_served_with_or_without_its_charset(
    client: TestClient, path: str, body: dict[str, object]
) -> None:
    content = json.dumps({**body, "prompt": "Grüße"} if "prompt" in body else body).encode()
    for content_type in ("application/json", "application/json; charset=utf-8"):
        r = post(client, path, content, content_type)
        assert r.status_code == 200, r.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_a_charset_other_than_utf8_is_400(
    client: TestClient, path: str, body: dict[str, object]
) -> None:
    content = json.dumps(body).encode()
    r = post(client, path, content, "application/json; charset=latin-1")
    assert_error(r, 400, "bad_request")


@pytest.mark.parametrize(
    "content_type", [None, "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]
)
def test_a_body_that_is_not_json_is_415_on_tasks_and_400_on_v1(
    client: TestClient, content_type: str | None
) -> None:
    content = json.dumps(BODY).encode()
    assert_error(
        post(client, "/generate-text", content, content_type), 415, "unsupported_media_type"
    )
    for path in ("/v1/completions", "/v1/chat/completions"):
        r = post(client, path, content, content_type)
        assert_error(r, 400, "unsupported_media_type", "invalid_request_error")
