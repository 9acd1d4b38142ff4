"""The bench's streamed client against the real server: client-side TTFT and token gaps."""

import asyncio
from typing import Any

import httpx

from bench.streamed import Streamed, stream_request
from bench.workloads import mixed_long
from tests.conftest import API_KEY, LiveServer


def streamed(server: LiveServer, body: dict[str, Any], *, raw: bool = False) -> Streamed:
    async def run() -> Streamed:
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120
        ) as c:
            return await stream_request(c, "gptapi", body, raw=raw)

    return asyncio.run(run())


def assert_twelve_tokens_timed(result: Streamed) -> None:
    assert result.status == 200
    assert result.ttft_s is not None and result.ttft_s > 0
    assert result.completion_tokens == 12
    # One gap between each two text events: at most one fewer than the tokens.
    assert 1 <= len(result.gaps_s) <= 11
    assert result.prompt_tokens > 0


def test_a_streamed_request_yields_its_first_token_time_gaps_and_usage(
    live_server: LiveServer,
) -> None:
    body = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 12, "temperature": 0}
    assert_twelve_tokens_timed(streamed(live_server, body))


def test_a_raw_streamed_request_times_v1_completion_chunks(live_server: LiveServer) -> None:
    body = {"model": "gptapi", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 12,
            "temperature": 0, "stream_options": {"include_usage": True}}  # fmt: skip
    assert_twelve_tokens_timed(streamed(live_server, body, raw=True))


def test_mixed_long_sends_a_long_distinct_document_every_4th_request(tokenizer) -> None:  # type: ignore[no-untyped-def]
    sizes = [len(tokenizer(mixed_long(i))) for i in range(8)]
    assert [s > 1000 for s in sizes] == [False, False, False, True] * 2
    a, b = tokenizer(mixed_long(3)), tokenizer(mixed_long(7))
    assert next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y) < 5
