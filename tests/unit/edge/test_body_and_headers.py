"""Hygiene around the engine, in process: security headers, docs switch, CORS, and a 500 that
tells the client only its request id. These never reach generation, so no model is loaded
except where a request must run (then a tiny fake engine stands in for llama.cpp)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from gptapi.app import create_app
from gptapi.config import Settings
from gptapi.engine import Engine, Prompt
from tests.conftest import API_KEY
from tests.fakes import FakeEngine
from tests.helpers import wait_until

AUTH = {"Authorization": f"Bearer {API_KEY}"}


class BrokenTokenizer(FakeEngine):
    """An engine whose tokenizer hits a bug: the one way to reach the catch-all 500."""

    def tokenize(self, prompt: Prompt) -> list[int]:
        raise RuntimeError("bug at /srv/gptapi/secret_path.py line 3")


def wait_ready(client: TestClient, seconds: float = 30) -> None:
    wait_until(lambda: client.get("/ready").status_code == 200, within_s=seconds, what="ready")


def never_loads(settings: Settings) -> Engine:
    raise RuntimeError("no engine in this test")


def app_with(**overrides: object) -> TestClient:
    settings = Settings(api_keys=API_KEY, **overrides)  # type: ignore[arg-type]
    return TestClient(create_app(settings, engine_factory=never_loads))


def test_every_response_carries_security_headers() -> None:
    with app_with() as c:
        for response in (c.get("/health"), c.get("/nope"), c.post("/generate-text", json={})):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert "default-src 'none'" in response.headers["content-security-policy"]
            assert response.headers["cache-control"] == "no-store"
            assert "server" not in response.headers


def test_docs_are_served_by_default_and_can_be_turned_off() -> None:
    with app_with() as c:
        assert c.get("/openapi.json").status_code == 200
        docs = c.get("/docs")
        assert docs.status_code == 200
        assert "content-security-policy" not in docs.headers  # the page loads its own scripts
    with app_with(docs_enabled=False) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            response = c.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"


def test_cors_is_off_by_default_and_allows_only_configured_origins() -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with app_with() as c:
        response = c.options("/generate-text", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    with app_with(cors_origins="https://app.example") as c:
        response = c.options("/generate-text", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/generate-text", headers={**preflight, "Origin": "https://evil.test"})
        assert "access-control-allow-origin" not in other.headers


def test_an_unexpected_error_is_a_500_with_only_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings(api_keys=API_KEY), engine_factory=lambda s: BrokenTokenizer())
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        with caplog.at_level(logging.ERROR, logger="gptapi.errors"):
            response = c.post("/generate-text", json={"prompt": "hi"}, headers=AUTH)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error == {
        "type": "server_error",
        "message": "internal server error",
        "code": "internal_error",
        "request_id": response.headers["x-request-id"],
    }
    assert "secret_path" not in response.text
    # The server log has the details, under the same request id.
    logged = [r for r in caplog.records if error["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None
