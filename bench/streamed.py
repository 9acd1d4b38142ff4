"""One streamed request to gptapi (/generate-text) or llama-server (/completion), timed by the
client: time to the first text event and the gaps between text events, the same measure for
both engines (each sends one event per token; events with no text are not counted).

``raw``: gptapi's /v1/completions instead (the text as it is, no chat template, no leading
whitespace skipped), so both engines process the very same raw text: the heavy twin's random
weights answer a chat-rendered prompt with whitespace only, which /generate-text (rightly)
holds back, leaving no text event to time."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Streamed:
    status: int
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0


async def stream_request(
    client: httpx.AsyncClient, kind: str, body: dict[str, Any], *, raw: bool = False
) -> Streamed:
    """``kind`` "gptapi": ``body`` is a /generate-text body (``raw``: a /v1/completions body);
    else a llama-server /completion body. Both get ``"stream": true``."""
    path = "/completion" if kind != "gptapi" else "/v1/completions" if raw else "/generate-text"
    start = time.perf_counter()
    last: float | None = None
    out = Streamed(200)
    async with client.stream("POST", path, json={**body, "stream": True}) as response:
        if response.status_code != 200:
            await response.aread()
            return Streamed(response.status_code)
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue  # blank separators and keepalive comments
            event = json.loads(line.removeprefix("data: "))
            if "error" in event:
                return Streamed(500)
            text = _text(kind, raw, event)
            if text:
                now = time.perf_counter()
                if last is None:
                    out.ttft_s = now - start
                else:
                    out.gaps_s.append(now - last)
                last = now
            _read_totals(kind, event, out)
    return out


def _text(kind: str, raw: bool, event: dict[str, Any]) -> str | None:
    if kind != "gptapi":
        text = event.get("content")
    elif raw:
        choices = event.get("choices") or [{}]
        text = choices[0].get("text")
    else:
        text = event.get("text")
    return None if text is None else str(text)


def _read_totals(kind: str, event: dict[str, Any], out: Streamed) -> None:
    if kind == "gptapi" and event.get("usage"):
        usage = event["usage"]
        out.completion_tokens = usage["completion_tokens"]
        out.prompt_tokens = usage["prompt_tokens"]
        details = usage.get("prompt_tokens_details") or {}
        out.cached_tokens = usage.get("cached_tokens", details.get("cached_tokens", 0))
    elif kind != "gptapi" and event.get("stop") and "timings" in event:
        t = event["timings"]
        out.cached_tokens = int(t.get("cache_n", 0))
        out.prompt_tokens = int(t["prompt_n"]) + out.cached_tokens
        out.completion_tokens = int(event.get("tokens_predicted", t.get("predicted_n", 0)))
