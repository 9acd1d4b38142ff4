"""One concurrency level against one running server: closed-loop users, one record per
request, the level's aggregate and the server's peak memory."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from bench.compare.targets import Target, request_body
from bench.procs import MemoryReader
from bench.serverenv import API_KEY
from bench.stats import percentile
from bench.streamed import stream_request

MIB = 2**20


@dataclass
class Record:
    users: int
    user: int
    status: int
    latency_s: float
    ttft_s: float | None
    completion_tokens: int
    prompt_tokens: int
    cached_tokens: int  # prompt tokens the engine reported it did not compute
    gaps_s: list[float] = field(default_factory=list)  # between streamed tokens


@dataclass
class Level:
    users: int
    requests: int
    errors: int
    wall_s: float
    output_tokens: int
    prompt_tokens_mean: float
    cached_tokens_mean: float
    tok_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    rss_mib: float
    rss_anon_mib: float
    rss_file_mib: float
    itl_p50_s: float | None = None  # inter-token latency, streamed runs only
    itl_p95_s: float | None = None


Outcome = tuple[int, float | None, int, int, int, list[float]]


async def one_request(
    client: httpx.AsyncClient, target: Target, i: int, new_tokens: int
) -> Outcome:
    """Status, time to first token, completion, prompt and cached prompt tokens, and (streamed)
    the gaps between tokens."""
    body = request_body(target, i, new_tokens)
    if target.stream:
        s = await stream_request(client, target.kind, body, raw=target.raw)
        return (s.status, s.ttft_s, s.completion_tokens, s.prompt_tokens, s.cached_tokens,
                s.gaps_s)  # fmt: skip
    if target.kind == "gptapi":
        return await _gptapi(client, body)
    if target.kind == "llama-cpp-python":
        return await _llama_cpp_python(client, body)
    return await _llama_server(client, body)


async def _gptapi(client: httpx.AsyncClient, body: dict[str, object]) -> Outcome:
    r = await client.post("/generate-text", json=body)
    if r.status_code != 200:
        return r.status_code, None, 0, 0, 0, []
    data = r.json()
    ttft_ms = data["timings"]["time_to_first_token_ms"]
    usage = data["usage"]
    ttft = None if ttft_ms is None else ttft_ms / 1000
    return (200, ttft, usage["completion_tokens"], usage["prompt_tokens"],
            usage.get("cached_tokens", 0), [])  # fmt: skip


async def _llama_server(client: httpx.AsyncClient, body: dict[str, object]) -> Outcome:
    # Each engine as shipped: llama-server's prompt cache (cache_prompt) stays on, as gptapi's
    # prefix sharing does; each reuses a prompt's opening tokens in its own way.
    start = time.perf_counter()
    r = await client.post("/completion", json=body)
    latency = time.perf_counter() - start
    if r.status_code != 200:
        return r.status_code, None, 0, 0, 0, []
    data = r.json()
    t = data["timings"]
    # llama-server reports no arrival-to-first-token time; take the latency minus the time spent
    # producing the tokens after the first. Its predicted_ms starts when the prompt is done, the
    # moment its first token is sampled, so it already is that time.
    ttft = latency - t["predicted_ms"] / 1000
    # prompt_n counts only the tokens it computed; cache_n those it reused from a slot's cache.
    cached = int(t.get("cache_n", 0))
    return 200, ttft, int(data["tokens_predicted"]), int(t["prompt_n"]) + cached, cached, []


async def _llama_cpp_python(client: httpx.AsyncClient, body: dict[str, object]) -> Outcome:
    # Its /v1/completions reports no timings: no TTFT when not streamed.
    r = await client.post("/v1/completions", json=body)
    if r.status_code != 200:
        return r.status_code, None, 0, 0, 0, []
    usage = r.json()["usage"]
    return 200, None, int(usage["completion_tokens"]), int(usage["prompt_tokens"]), 0, []


async def run_level(
    base_url: str,
    target: Target,
    pid: int,
    users: int,
    per_user: int,
    new_tokens: int,
    first_index: int,
) -> tuple[Level, list[Record]]:
    records: list[Record] = []
    peak = {"rss": 0, "anon": 0, "file": 0}
    done = asyncio.Event()
    reader = MemoryReader([pid], pss_every_s=None)

    async def sample() -> None:
        while not done.is_set():
            if (s := reader.read()) is not None:
                peak.update(rss=max(peak["rss"], s.rss), anon=max(peak["anon"], s.anon),
                            file=max(peak["file"], s.file))  # fmt: skip
            await asyncio.sleep(0.25)

    async def user(u: int, client: httpx.AsyncClient) -> None:
        for k in range(per_user):
            for attempt in (1, 2):
                start = time.perf_counter()
                try:
                    outcome = await one_request(
                        client, target, first_index + u * per_user + k, new_tokens
                    )
                    break
                except httpx.RemoteProtocolError:
                    # The server closed a kept-alive connection as this request went out on
                    # it (llama-server's keep-alive timeout): it never saw it; send it again.
                    if attempt == 2:
                        raise
            latency = time.perf_counter() - start
            status, ttft, n, n_prompt, n_cached, gaps = outcome
            records.append(Record(users, u, status, latency, ttft, n, n_prompt, n_cached, gaps))

    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=users + 4)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=3600, limits=limits
    ) as c:
        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        await asyncio.gather(*(user(u, c) for u in range(users)))
        wall = time.perf_counter() - t0
        done.set()
        await sampler
    return summarize_level(users, records, wall, peak), records


def summarize_level(users: int, records: list[Record], wall: float, peak: dict[str, int]) -> Level:
    ok = [r for r in records if r.status == 200]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    gaps = [g for r in ok for g in r.gaps_s]
    tokens = sum(r.completion_tokens for r in ok)
    latencies = [r.latency_s for r in ok]
    return Level(
        users=users,
        requests=len(records),
        errors=len(records) - len(ok),
        wall_s=wall,
        output_tokens=tokens,
        prompt_tokens_mean=sum(r.prompt_tokens for r in ok) / len(ok) if ok else 0.0,
        cached_tokens_mean=sum(r.cached_tokens for r in ok) / len(ok) if ok else 0.0,
        tok_per_s=tokens / wall,
        latency_p50_s=percentile(latencies, 0.5),
        latency_p95_s=percentile(latencies, 0.95),
        ttft_p50_s=percentile(ttfts, 0.5),
        ttft_p95_s=percentile(ttfts, 0.95),
        rss_mib=peak["rss"] / MIB,
        rss_anon_mib=peak["anon"] / MIB,
        rss_file_mib=peak["file"] / MIB,
        itl_p50_s=percentile(gaps, 0.5),
        itl_p95_s=percentile(gaps, 0.95),
    )
