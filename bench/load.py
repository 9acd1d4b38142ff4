"""Simulated users against a gptapi server: closed loop or Poisson arrivals, distinct inputs,
one record per request, and the server's memory sampled from /proc at >= 2 Hz."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.corpus import Corpus, TaskInput
from bench.procs import MemoryReader, MemorySample

MIB = 2**20


@dataclass
class RequestResult:
    user: int
    task: str
    input_id: str
    status: int
    error_kind: str | None
    start_s: float  # offset from the run's start
    latency_s: float
    ttft_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_per_s: float | None
    request_id: str | None
    # The server's own log line for this request (requests.jsonl, text fields dropped): its
    # queue time, cached tokens, and the process memory when it started and ended.
    server: dict[str, Any] | None = None
    inter_token_s: list[float] = field(default_factory=list)


@dataclass
class LoadConfig:
    base_url: str
    api_key: str
    users: int
    requests_per_user: int | None
    duration_s: float | None
    mix: dict[str, float]
    max_tokens: int
    rate: float | None  # Poisson arrivals per second (open loop); None = closed loop
    stream: bool
    timeout_s: float
    time_cap_s: float
    api: str = "tasks"  # "tasks": /generate-text etc.; "openai": the same inputs through /v1
    json_schema: dict[str, Any] | None = None  # structured output for every request


@dataclass
class Level:
    """One user level of a run, as output.txt and the plots show it (``summary``: see
    ``bench.report.summarize``)."""

    users: int
    requests_per_user: Any
    results: list[RequestResult]
    samples: list[MemorySample]
    summary: dict[str, Any]


def classify(status: int, body: dict[str, Any] | None, exc: BaseException | None) -> str | None:
    """One error kind per failed request, so a run's summary can count them by cause."""
    if exc is not None:
        if isinstance(exc, httpx.TimeoutException):
            return "client_timeout"
        if isinstance(exc, httpx.TransportError):
            return "connection_error"
        return "client_error"
    code = ((body or {}).get("error") or {}).get("code")
    if status == 200:
        # A stream that failed after its 200 (timed out, refused while queued) ends with an
        # error event: not an answer.
        return f"stream_error:{code}" if code else None
    by_status = {
        429: "rate_limited",
        503: "server_busy",
        504: "server_timeout",
        401: "unauthorized",
    }
    if status in by_status:
        return f"{by_status[status]}:{code}" if status == 503 and code else by_status[status]
    return f"http_{status}" + (f":{code}" if code else "")


class LoadRun:
    def __init__(
        self,
        config: LoadConfig,
        corpus: Corpus,
        pids: list[int],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.config = config
        self.corpus = corpus
        self.pids = pids
        self.results: list[RequestResult] = []
        self.samples: list[MemorySample] = []
        self.on_progress = on_progress
        self._t0 = 0.0
        self._rng = random.Random(1234)  # noqa: S311 - load shape, not security

    @property
    def expected(self) -> int:
        if self.config.requests_per_user is not None:
            return self.config.users * self.config.requests_per_user
        return 0

    async def run(self) -> None:
        cfg = self.config
        limits = httpx.Limits(max_connections=cfg.users + 8, max_keepalive_connections=cfg.users)
        headers = {"Authorization": f"Bearer {cfg.api_key}"}
        self._t0 = time.perf_counter()
        async with httpx.AsyncClient(
            base_url=cfg.base_url, headers=headers, timeout=cfg.timeout_s, limits=limits
        ) as client:
            sampler = asyncio.create_task(self._sample())
            try:
                async with asyncio.timeout(cfg.time_cap_s):
                    if cfg.rate:
                        await self._open_loop(client)
                    else:
                        await asyncio.gather(*(self._user(u, client) for u in range(cfg.users)))
            except TimeoutError:
                pass  # the time cap ends every run, whatever the server does
            finally:
                sampler.cancel()

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def _more(self, sent_by_user: int) -> bool:
        cfg = self.config
        if cfg.requests_per_user is not None and sent_by_user >= cfg.requests_per_user:
            return False
        return cfg.duration_s is None or self._elapsed() < cfg.duration_s

    async def _user(self, user: int, client: httpx.AsyncClient) -> None:
        sent = 0
        while self._more(sent):
            await self._one(client, user, self.corpus.pick(self.config.mix, self._rng))
            sent += 1

    async def _open_loop(self, client: httpx.AsyncClient) -> None:
        assert self.config.rate
        tasks: list[asyncio.Task[None]] = []
        sent = 0
        total = self.expected or None
        while (total is None or sent < total) and self._more(0):
            user = sent % self.config.users
            task_input = self.corpus.pick(self.config.mix, self._rng)
            tasks.append(asyncio.create_task(self._one(client, user, task_input)))
            sent += 1
            await asyncio.sleep(self._rng.expovariate(self.config.rate))
        await asyncio.gather(*tasks)

    async def _one(self, client: httpx.AsyncClient, user: int, task_input: TaskInput) -> None:
        start = self._elapsed()
        path, body = request_for(
            task_input, self.config.max_tokens, self.config.api, self.config.json_schema
        )
        status, payload, exc, request_id = 0, None, None, None
        ttft: float | None = None
        gaps: list[float] = []
        try:
            if self.config.stream:
                status, payload, request_id, ttft, gaps = await self._stream(client, path, body)
            else:
                response = await client.post(path, json=body)
                status = response.status_code
                request_id = response.headers.get("x-request-id")
                payload = _json_or_none(response)
        except Exception as e:  # every failure becomes a record, never a crash of the tool
            exc = e
        latency = self._elapsed() - start
        usage = (payload or {}).get("usage") or {}
        timings = (payload or {}).get("timings") or {}
        if ttft is None and timings.get("time_to_first_token_ms") is not None:
            ttft = timings["time_to_first_token_ms"] / 1000
        self.results.append(
            RequestResult(
                user=user,
                task=task_input.task,
                input_id=task_input.input_id,
                status=status,
                error_kind=classify(status, payload, exc),
                start_s=start,
                latency_s=latency,
                ttft_s=ttft,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                tokens_per_s=timings.get("tokens_per_s"),
                request_id=request_id,
                inter_token_s=gaps,
            )
        )
        if self.on_progress:
            self.on_progress(len(self.results), self.expected)

    async def _stream(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None, str | None, float | None, list[float]]:
        start = time.perf_counter()
        first: float | None = None
        last = start
        gaps: list[float] = []
        final: dict[str, Any] | None = None
        if self.config.api == "openai":
            body = {**body, "stream_options": {"include_usage": True}}
        async with client.stream("POST", path, json={**body, "stream": True}) as response:
            request_id = response.headers.get("x-request-id")
            if response.status_code != 200:
                await response.aread()
                return response.status_code, _json_or_none(response), request_id, None, []
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                now = time.perf_counter()
                event = json.loads(line[6:])
                if _chunk_text(event):
                    if first is None:
                        first = now - start
                    else:
                        gaps.append(now - last)
                    last = now
                if event.get("usage"):
                    final = event
                if event.get("error"):
                    final = event  # the stream's last event: classify() counts it
        return 200, final, request_id, first, gaps

    async def _sample(self) -> None:
        reader = MemoryReader(self.pids)
        while True:
            sample = await asyncio.to_thread(reader.read, self._elapsed()) if self.pids else None
            if sample is not None:
                self.samples.append(sample)
            await asyncio.sleep(0.4)


def request_for(
    task_input: TaskInput, max_tokens: int, api: str, json_schema: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The route and body for one corpus input: a task endpoint, or its /v1 equivalent; with a
    JSON schema, structured output (``json_schema``, or /v1's ``response_format``)."""
    if api != "openai":
        extra = {} if json_schema is None else {"json_schema": json_schema}
        return task_input.path, {**task_input.body, "max_tokens": max_tokens, **extra}
    body = task_input.body
    common: dict[str, Any] = {"model": "gptapi", "max_tokens": max_tokens, "temperature": 0}
    if json_schema is not None:
        common["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "bench", "schema": json_schema},
        }
    if task_input.task == "generate":
        return "/v1/completions", {**common, "prompt": body["prompt"]}
    if task_input.task == "summarize":
        content = f"Summarize the following text in one sentence.\n\n{body['text']}"
    else:
        content = (
            "Answer the question using only the context below.\n\n"
            f"Context:\n{body['context']}\n\nQuestion: {body['question']}"
        )
    return "/v1/chat/completions", {**common, "messages": [{"role": "user", "content": content}]}


def _chunk_text(event: dict[str, Any]) -> str:
    """Generated text in a stream event: a task event's "text", or an OpenAI chunk's choice."""
    if event.get("text"):
        return str(event["text"])
    for choice in event.get("choices") or []:
        text = choice.get("text") or (choice.get("delta") or {}).get("content")
        if text:
            return str(text)
    return ""


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
