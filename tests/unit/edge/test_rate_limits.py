"""Rate limits through the whole app in process, on the fake engine (no model is needed to count
requests): per key (sustained and burst) on the generation routes, per client address elsewhere
and for wrong keys, and shared through a real redis-server so a key's limit holds across two
app instances (two processes behave the same: each has its own app, the counters are in Redis)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API_KEY, free_port
from tests.helpers import serve_fake

OTHER_KEY = "other-key-0123456789abcdef"
WRONG_KEY = "wrong-key-0123456789abcdef"
GOOD = {"prompt": "The capital of France is", "max_tokens": 1}


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def limited(**settings: object) -> Iterator[TestClient]:
    with serve_fake(api_keys=f"{API_KEY},{OTHER_KEY}", **settings) as client:
        yield client


def test_a_key_over_its_limit_gets_429_with_retry_after_and_others_are_unaffected() -> None:
    with limited(rate_limit="3/minute") as c:
        statuses = []
        for _ in range(3):
            r = c.post("/generate-text", json=GOOD, headers=auth())
            statuses.append(r.status_code)
            assert r.headers["x-ratelimit-limit"] in ("3", "60")  # the tighter of the two
        assert statuses == [200, 200, 200]
        refused = c.post("/generate-text", json=GOOD, headers=auth())
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert set(refused.json()["error"]) == {"type", "message", "code", "request_id"}
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-limit"] == "3"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert int(refused.headers["x-ratelimit-reset"]) > time.time()
        other = c.post(
            "/summarize-text",
            json={"text": "A short text.", "max_tokens": 1},
            headers=auth(OTHER_KEY),
        )
        assert other.is_success


def test_successful_responses_say_how_much_of_the_limit_is_left() -> None:
    with limited(rate_limit="5/minute") as c:
        remaining = [
            int(
                c.post("/generate-text", json=GOOD, headers=auth()).headers["x-ratelimit-remaining"]
            )
            for _ in range(3)
        ]
    assert remaining == [4, 3, 2]


def test_burst_limit_refuses_a_rapid_burst_from_one_key() -> None:
    with limited(rate_limit_burst="2/10second") as c:
        statuses = [
            c.post("/generate-text", json=GOOD, headers=auth()).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 429]


def test_unauthenticated_routes_and_wrong_keys_are_limited_per_client_address() -> None:
    with limited(rate_limit_unauthenticated="4/minute") as c:
        wrong = auth(WRONG_KEY)
        statuses = [
            c.post("/generate-text", json=GOOD, headers=wrong).status_code for _ in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 429]
        # Open routes have their own budget of the same size.
        assert [c.get("/health").status_code for _ in range(5)] == [200] * 4 + [429]
        # A valid key is counted per key, not per address: still served.
        assert c.post("/generate-text", json=GOOD, headers=auth()).status_code == 200


def test_a_keys_limit_holds_across_two_servers_sharing_redis(redis_url: str) -> None:
    settings = {"rate_limit": "4/minute", "rate_limit_storage": redis_url}
    with limited(**settings) as a, limited(**settings) as b:
        statuses = [
            (a if i % 2 == 0 else b).post("/generate-text", json=GOOD, headers=auth()).status_code
            for i in range(5)
        ]
    # Each server alone would have allowed 4: together they allowed 4.
    assert statuses == [200, 200, 200, 200, 429]


def test_an_unreachable_redis_does_not_fail_requests(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    caplog.set_level(logging.ERROR, logger="gptapi.edge.ratelimit")
    with limited(rate_limit="2/minute", rate_limit_storage=dead) as c:
        statuses = [
            c.post("/generate-text", json=GOOD, headers=auth()).status_code for _ in range(3)
        ]
    # Counted in the process instead: the limit still holds.
    assert statuses == [200, 200, 429]
    assert "counting in this process" in caplog.text
