"""Rate limits against live servers on the real model: per key (sustained and burst) on the
generation routes, per client address elsewhere and for wrong keys, and shared through a real
redis-server so a key's limit holds across two server processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, LiveServer, free_port, start_server, stop_server

OTHER_KEY = "other-key-0123456789abcdef"
GOOD = {"prompt": "The capital of France is", "max_tokens": 1}


def limited_server(tmp: Path, **env: str) -> LiveServer:
    tmp.mkdir(parents=True, exist_ok=True)
    # Ready by its log, so no /ready probe counts against this address.
    return start_server(tmp, env={"GPTAPI_API_KEYS": f"{API_KEY},{OTHER_KEY}", **env}, probe=False)


@pytest.fixture(scope="module")
def per_minute(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = limited_server(tmp_path_factory.mktemp("rl"), GPTAPI_RATE_LIMIT="3/minute")
    yield server
    stop_server(server)


def test_a_key_over_its_limit_gets_429_with_retry_after_and_others_are_unaffected(
    per_minute: LiveServer,
) -> None:
    with per_minute.client() as c:
        statuses = []
        for _ in range(3):
            r = c.post("/generate-text", json=GOOD)
            statuses.append(r.status_code)
            assert r.headers["x-ratelimit-limit"] in ("3", "10")  # the tighter of the two
        assert statuses == [200, 200, 200]
        refused = c.post("/generate-text", json=GOOD)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit"] == "3"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()
    with per_minute.client(key=OTHER_KEY) as c:
        assert c.post("/summarize-text", json={"text": "A short text.", "max_tokens": 1}).is_success


def test_successful_responses_say_how_much_of_the_limit_is_left(tmp_path: Path) -> None:
    server = limited_server(tmp_path, GPTAPI_RATE_LIMIT="5/minute")
    try:
        with server.client() as c:
            remaining = [
                int(c.post("/generate-text", json=GOOD).headers["x-ratelimit-remaining"])
                for _ in range(3)
            ]
        assert remaining == [4, 3, 2]
    finally:
        stop_server(server)


def test_burst_limit_refuses_a_rapid_burst_from_one_key(tmp_path: Path) -> None:
    server = limited_server(tmp_path, GPTAPI_RATE_LIMIT_BURST="2/10second")
    try:
        with server.client() as c:
            statuses = [c.post("/generate-text", json=GOOD).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
    finally:
        stop_server(server)


def test_unauthenticated_routes_and_wrong_keys_are_limited_per_client_address(
    tmp_path: Path,
) -> None:
    server = limited_server(tmp_path, GPTAPI_RATE_LIMIT_UNAUTHENTICATED="4/minute")
    try:
        with server.client(key="wrong-key-0123456789abcdef") as c:
            statuses = [c.post("/generate-text", json=GOOD).status_code for _ in range(5)]
            assert statuses == [401, 401, 401, 401, 429]
            # Routes without a key have their own budget of the same size.
            assert [c.get("/health").status_code for _ in range(5)] == [200] * 4 + [429]
        # A valid key is counted per key, not per address: still served.
        with server.client() as c:
            assert c.post("/generate-text", json=GOOD).status_code == 200
    finally:
        stop_server(server)


def test_a_keys_limit_holds_across_two_servers_sharing_redis(
    tmp_path: Path, redis_url: str
) -> None:
    env = {"GPTAPI_RATE_LIMIT": "4/minute", "GPTAPI_RATE_LIMIT_STORAGE": redis_url}
    a = limited_server(tmp_path / "a", **env)
    b = limited_server(tmp_path / "b", **env)
    try:
        with a.client() as ca, b.client() as cb:
            statuses = [
                (ca if i % 2 == 0 else cb).post("/generate-text", json=GOOD).status_code
                for i in range(5)
            ]
        # Each server alone would have allowed 4: together they allowed 4.
        assert statuses == [200, 200, 200, 200, 429]
    finally:
        stop_server(a)
        stop_server(b)


def test_an_unreachable_redis_does_not_fail_requests(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    server = limited_server(tmp_path, GPTAPI_RATE_LIMIT="2/minute", GPTAPI_RATE_LIMIT_STORAGE=dead)
    try:
        with server.client() as c:
            statuses = [c.post("/generate-text", json=GOOD).status_code for _ in range(3)]
        # Counted in the process instead: the limit still holds.
        assert statuses == [200, 200, 429]
        assert "counting in this process" in server.log.read_text()
    finally:
        stop_server(server)


def test_429_body_has_the_error_shape(per_minute: LiveServer) -> None:
    with httpx.Client(base_url=per_minute.base_url, timeout=30) as c:
        for _ in range(2):
            c.get("/health")
    with per_minute.client() as c:
        for _ in range(4):
            r = c.post("/generate-text", json=GOOD)
    assert r.status_code == 429
    assert set(r.json()["error"]) == {"type", "message", "code", "request_id"}
