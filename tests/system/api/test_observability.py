"""Request log, memory samples, /metrics and the memory guard, on the real model."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from gptapi.app import create_app
from gptapi.config import Settings
from tests.conftest import API_KEY, LiveServer
from tests.helpers import metric_values, wait_until

AUTH = {"Authorization": f"Bearer {API_KEY}"}

ENTRY_FIELDS = {
    "timestamp", "request_id", "key_id", "route", "method", "task", "status", "end_reason",
    "prompt_tokens", "completion_tokens", "queue_ms", "ttft_ms", "total_ms", "tokens_per_s",
    "memory_start", "memory_end", "memory_delta", "busy_slots_at_admission",
    "queue_depth_at_admission",
}  # fmt: skip
MEMORY_FIELDS = {
    "rss_bytes", "rss_anon_bytes", "rss_file_bytes", "rss_shmem_bytes", "rss_peak_bytes",
    "pss_bytes", "uss_bytes", "swap_bytes", "system_available_bytes",
    "tracemalloc_current_bytes", "tracemalloc_peak_bytes",
}  # fmt: skip
SECRET_PROMPT = "Zanzibar-quokka-1187 is the hidden phrase of this prompt."


def log_entries(server: LiveServer, request_ids: set[str], within_s: float = 10) -> list[Any]:
    """The entries for these ids (the log is written by a background thread)."""
    path = server.log_dir / "requests.jsonl"
    deadline = time.monotonic() + within_s
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        entries = [json.loads(line) for line in lines]
        found = [e for e in entries if e["request_id"] in request_ids]
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_three_requests_give_three_complete_log_lines(
    live_server: LiveServer, client: httpx.Client, model_path: Path
) -> None:
    responses = [
        client.post("/generate-text", json={"prompt": SECRET_PROMPT, "max_tokens": 4}),
        client.post("/answer-question", json={"question": "What is 2+2?", "max_tokens": 4}),
        client.post("/summarize-text", json={"text": SECRET_PROMPT, "max_tokens": 8}),
    ]
    assert all(r.status_code == 200 for r in responses)
    ids = {r.headers["x-request-id"] for r in responses}
    entries = log_entries(live_server, ids)
    assert len(entries) == 3
    raw = (live_server.log_dir / "requests.jsonl").read_text()
    assert API_KEY not in raw
    assert "Zanzibar" not in raw
    for entry in entries:
        assert entry.keys() >= ENTRY_FIELDS
        assert entry["status"] == 200
        assert entry["key_id"] and len(entry["key_id"]) == 8
        assert entry["task"] in ("generate", "answer", "summarize")
        assert entry["end_reason"] in ("stop", "length")
        assert entry["prompt_tokens"] > 0 and entry["completion_tokens"] > 0
        assert entry["total_ms"] >= entry["ttft_ms"] >= entry["queue_ms"] >= 0
        for snap in (entry["memory_start"], entry["memory_end"]):
            assert snap.keys() >= MEMORY_FIELDS
            # The mmap'd weights are resident and file-backed.
            assert snap["rss_file_bytes"] >= 0.8 * model_path.stat().st_size
            assert snap["rss_bytes"] >= snap["rss_anon_bytes"] + snap["rss_file_bytes"] * 0.99
            assert snap["tracemalloc_current_bytes"] is None  # GPTAPI_TRACEMALLOC is off
        assert set(entry["memory_delta"]) == MEMORY_FIELDS


def test_refused_requests_are_logged_too(live_server: LiveServer) -> None:
    with live_server.client(key=None) as anonymous, live_server.client() as authed:
        unauthorized = anonymous.post("/generate-text", json={"prompt": "x"})
        invalid = authed.post("/generate-text", json={"prompt": "x", "max_tokens": -1})
    assert (unauthorized.status_code, invalid.status_code) == (401, 422)
    by_id = {
        e["request_id"]: e
        for e in log_entries(
            live_server, {unauthorized.headers["x-request-id"], invalid.headers["x-request-id"]}
        )
    }
    assert by_id[unauthorized.headers["x-request-id"]]["end_reason"] == "invalid_api_key"
    assert by_id[unauthorized.headers["x-request-id"]]["key_id"] is None
    assert by_id[invalid.headers["x-request-id"]]["end_reason"] == "validation_error"
    assert by_id[invalid.headers["x-request-id"]]["status"] == 422


def test_memory_samples_are_written_every_interval(live_server: LiveServer) -> None:
    path = live_server.log_dir / "memory.jsonl"
    wait_until(
        lambda: path.exists() and len(path.read_text().splitlines()) >= 2, what="two samples"
    )
    samples = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(samples) >= 2
    assert MEMORY_FIELDS | {"timestamp", "busy_slots", "queued"} <= samples[-1].keys()


def test_metrics_parse_and_move_with_requests(
    live_server: LiveServer, client: httpx.Client
) -> None:
    with live_server.client(key=None) as anonymous:
        assert anonymous.get("/metrics").status_code == 401  # not public by default
    before = metric_values(client.get("/metrics").text)
    r = client.post("/generate-text", json={"prompt": "Hello there", "max_tokens": 3})
    assert r.status_code == 200
    after = metric_values(client.get("/metrics").text)

    def moved(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    route_200 = (("route", "/generate-text"), ("status", "200"))
    assert moved("gptapi_requests_total", route_200) == 1
    assert moved("gptapi_completion_tokens_total") == 3
    assert moved("gptapi_prompt_tokens_total") == r.json()["usage"]["prompt_tokens"]
    assert moved("gptapi_queue_seconds_count") == 1
    assert moved("gptapi_time_to_first_token_seconds_count") == 1
    assert moved("gptapi_request_duration_seconds_count", (("route", "/generate-text"),)) == 1
    assert after[("gptapi_slots", ())] == 8
    assert after[("gptapi_process_memory_bytes", (("kind", "rss_file"),))] > 0
    assert after[("gptapi_system_available_memory_bytes", ())] > 0
    # What the memory guard compares (no cgroup limit on this machine: the host's headroom).
    assert after[("gptapi_memory_headroom_bytes", ())] > 0
    assert ("gptapi_memory_limit_bytes", ()) in after


def test_metrics_count_prompt_tokens_shared_by_concurrent_requests(
    live_server: LiveServer, client: httpx.Client
) -> None:
    before = metric_values(client.get("/metrics").text)
    background = "Background: " + "the quick brown fox jumps over the lazy dog. " * 6
    prompts = [background + "Question: what is the fox?", background + "Question: the dog?"]

    async def both() -> list[int]:
        async with httpx.AsyncClient(base_url=live_server.base_url, headers=AUTH, timeout=60) as c:
            responses = await asyncio.gather(
                *(c.post("/generate-text", json={"prompt": p, "max_tokens": 20}) for p in prompts)
            )
        return [r.status_code for r in responses]

    assert asyncio.run(both()) == [200, 200]
    after = metric_values(client.get("/metrics").text)
    shared = after[("gptapi_prompt_tokens_shared_total", ())]
    # One request takes over at least the common background from the other.
    assert shared - before.get(("gptapi_prompt_tokens_shared_total", ()), 0.0) >= 60


def test_memory_guard_refuses_with_503_when_free_memory_is_below_its_threshold() -> None:
    app = create_app(Settings(api_keys=API_KEY, min_free_mb=2**24 - 1, slots=1, n_ctx=512))
    with TestClient(app) as c:
        deadline = time.monotonic() + 60
        while c.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = c.post(
            "/generate-text",
            json={"prompt": "Hi", "max_tokens": 2},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert "low memory" in r.json()["error"]["message"]
        metrics = metric_values(c.get("/metrics", headers={"X-API-Key": API_KEY}).text)
        assert metrics[("gptapi_refusals_total", (("reason", "low_memory"),))] == 1
