"""Overload on the real model: far more concurrent requests than slots and queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import API_KEY, start_server, stop_server


async def _flood(base_url: str, n: int) -> list[int | str]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=120
    ) as c:

        async def one(i: int) -> int | str:
            body = {"prompt": f"Request {i}: the weather today is", "max_tokens": 8}
            try:
                response = await c.post("/generate-text", json=body)
            except httpx.HTTPError as exc:  # a hang or a dropped connection
                return type(exc).__name__
            if response.status_code == 503:
                assert response.headers["retry-after"].isdigit()
                assert response.json()["error"]["code"] == "server_busy"
            return response.status_code

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_200_concurrent_requests_on_2_slots_get_only_200_or_503_then_service_is_normal(
    tmp_path: Path,
) -> None:
    server = start_server(
        tmp_path, env={"GPTAPI_SLOTS": "2", "GPTAPI_MAX_QUEUE": "8", "GPTAPI_N_CTX": "512"}
    )
    try:
        statuses = asyncio.run(_flood(server.base_url, 200))
        assert set(statuses) <= {200, 503}, sorted(set(map(str, statuses)))
        # At least the 2 running and 8 queued were served; most of the rest were refused.
        assert statuses.count(200) >= 10
        assert statuses.count(503) >= 100
        with server.client() as c:
            ready = c.get("/ready").json()
            assert (ready["busy_slots"], ready["queued"]) == (0, 0)
            after = c.post("/generate-text", json={"prompt": "Hello", "max_tokens": 4})
        assert after.status_code == 200
        assert after.json()["usage"]["completion_tokens"] >= 1
        assert server.proc.poll() is None
    finally:
        stop_server(server)
