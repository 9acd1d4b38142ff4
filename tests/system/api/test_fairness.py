"""Sharing between keys on the real model: keys take turns in the queue, a key's cap and token
budget answer 429, default limits let one key run the stress test, queued streams hear from
the server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from gptapi.config import Settings
from tests.conftest import API_KEY, start_server, stop_server
from tests.helpers import wait_for

KEY_A = "key-a-0123456789abcdef0123"
KEY_B = "key-b-0123456789abcdef0123"
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"  # greedy continuation: counts on, no early stop


def post_all(base_url: str, key: str, bodies: list[dict[str, Any]], out: list[Any]) -> None:
    """One thread per body, each appending (body index, status, finish time) to ``out``."""

    def one(i: int, body: dict[str, Any]) -> None:
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300
        ) as c:
            r = c.post("/generate-text", json=body)
        out.append((i, r.status_code, time.monotonic()))

    threads = [threading.Thread(target=one, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_key_b_is_served_between_key_a_requests_not_after_them(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        env={"GPTAPI_API_KEYS": f"{KEY_A},{KEY_B}", "GPTAPI_SLOTS": "2", "GPTAPI_N_CTX": "512"},
    )
    try:
        a_done: list[Any] = []
        b_done: list[Any] = []
        bodies = [{"prompt": f"Story {i}: once upon a time", "max_tokens": 16} for i in range(20)]
        a = threading.Thread(target=post_all, args=(server.base_url, KEY_A, bodies, a_done))
        a.start()
        wait_for(server, busy=2, queued=18, within_s=30)
        b_bodies = [{"prompt": f"Note {i}: the weather is", "max_tokens": 16} for i in range(3)]
        post_all(server.base_url, KEY_B, b_bodies, b_done)
        a.join()
    finally:
        stop_server(server)
    assert {s for _, s, _ in a_done + b_done} == {200}
    a_finish = sorted(t for _, _, t in a_done)
    assert max(t for _, _, t in b_done) < a_finish[9], "key B waited behind key A's 10th"


def test_a_key_over_its_in_flight_cap_gets_429_while_another_key_is_served(
    tmp_path: Path,
) -> None:
    server = start_server(
        tmp_path,
        env={
            "GPTAPI_API_KEYS": f"{KEY_A},{KEY_B}",
            "GPTAPI_SLOTS": "1",
            "GPTAPI_MAX_INFLIGHT_PER_KEY": "2",
        },
    )
    try:
        held: list[Any] = []
        long = [{"prompt": COUNTING, "max_tokens": 200} for _ in range(2)]
        a = threading.Thread(target=post_all, args=(server.base_url, KEY_A, long, held))
        a.start()
        wait_for(server, busy=1, queued=1, within_s=30)
        with httpx.Client(base_url=server.base_url, timeout=300) as c:
            over = c.post(
                "/generate-text",
                json={"prompt": "Hi", "max_tokens": 4},
                headers={"Authorization": f"Bearer {KEY_A}"},
            )
            other = c.post(
                "/generate-text",
                json={"prompt": "Hi", "max_tokens": 4},
                headers={"Authorization": f"Bearer {KEY_B}"},
            )
        a.join()
    finally:
        stop_server(server)
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "too_many_requests_in_flight"
    assert int(over.headers["retry-after"]) >= 1
    assert other.status_code == 200
    assert [s for _, s, _ in held] == [200, 200]


def test_a_key_over_its_token_budget_gets_429_with_retry_after(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"GPTAPI_TOKEN_RATE_LIMIT": "80/minute"})
    try:
        with server.client() as c:
            first = c.post("/generate-text", json={"prompt": COUNTING, "max_tokens": 70})
            # No wait: a response goes out only once its completion tokens are counted.
            second = c.post("/generate-text", json={"prompt": COUNTING, "max_tokens": 4})
            too_big = c.post("/generate-text", json={"prompt": "word " * 200, "max_tokens": 1})
    finally:
        stop_server(server)
    assert first.status_code == 200
    assert first.json()["usage"]["total_tokens"] >= 75  # most of the budget used
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "token_rate_limited"
    assert 1 <= int(second.headers["retry-after"]) <= 60
    assert too_big.status_code == 429  # a prompt bigger than the whole budget never fits


def test_one_key_with_40_concurrent_users_under_default_limits_gets_no_429(
    tmp_path: Path,
) -> None:
    defaults = Settings.model_fields
    server = start_server(
        tmp_path,
        env={
            "GPTAPI_RATE_LIMIT": str(defaults["rate_limit"].default),
            "GPTAPI_RATE_LIMIT_BURST": str(defaults["rate_limit_burst"].default),
        },
    )
    statuses: list[int] = []

    def user(u: int) -> None:
        with server.client(timeout=300) as c:
            for route, body in (
                ("/generate-text", {"prompt": f"User {u} writes:", "max_tokens": 8}),
                ("/summarize-text", {"text": f"User {u} had a long day at work.", "max_tokens": 8}),
                ("/answer-question", {"question": f"What is {u} plus 1?", "max_tokens": 8}),
            ):
                statuses.append(c.post(route, json=body).status_code)

    try:
        users = [threading.Thread(target=user, args=(u,)) for u in range(40)]
        for t in users:
            t.start()
        for t in users:
            t.join()
    finally:
        stop_server(server)
    assert statuses.count(200) == 120, sorted(set(statuses))


def test_a_queued_stream_hears_its_position_then_prompt_progress(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"GPTAPI_SLOTS": "1", "GPTAPI_STREAM_KEEPALIVE_S": "0.2"})
    try:
        done: list[Any] = []
        holder = threading.Thread(
            target=post_all,
            args=(server.base_url, API_KEY,
                  [{"prompt": COUNTING, "max_tokens": 60}], done),
        )  # fmt: skip
        holder.start()
        wait_for(server, busy=1, queued=0, within_s=30)
        long_prompt = " ".join(f"w{i}" for i in range(600))  # ~2,000 tokens
        with server.client() as c, c.stream(
            "POST", "/generate-text",
            json={"prompt": long_prompt, "max_tokens": 4, "stream": True},
        ) as response:  # fmt: skip
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
        holder.join()
    finally:
        stop_server(server)
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    comments = lines[:first_data]
    assert comments[0] == ": queued position=1"
    progress = [c for c in comments if c.startswith(": prompt ")]
    done_total = [tuple(map(int, c.removeprefix(": prompt ").split("/"))) for c in progress]
    assert any(0 < n < total for n, total in done_total), comments
    assert lines[-1] == "data: [DONE]"
