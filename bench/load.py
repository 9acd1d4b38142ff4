"""Simulated users against a gptapi server: closed loop or Poisson arrivals, distinct inputs,
one record per request, and the server's memory sampled from /proc at >= 2 Hz."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.corpus import Corpus, TaskInput

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
class MemorySample:
    t_s: float
    rss: int
    pss: int | None
    anon: int
    file: int
    processes: int


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


def classify(status: int, body: dict[str, Any] | None, exc: BaseException | None) -> str | None:
    """One error kind per failed request, so a run's summary can count them by cause."""
    if exc is not None:
        if isinstance(exc, httpx.TimeoutException):
            return "client_timeout"
        if isinstance(exc, httpx.TransportError):
            return "connection_error"
        return "client_error"
    if status == 200:
        return None
    code = ((body or {}).get("error") or {}).get("code")
    by_status = {
        429: "rate_limited",
        503: "server_busy",
        504: "server_timeout",
        401: "unauthorized",
    }
    if status in by_status:
        return f"{by_status[status]}:{code}" if status == 503 and code else by_status[status]
    return f"http_{status}" + (f":{code}" if code else "")


def find_server_pids(base_url: str, explicit: int | None) -> list[int]:
    """The server process and its children (uvicorn workers). Local servers only."""
    root = explicit
    if root is None:
        port = httpx.URL(base_url).port or 80
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                root = conn.pid
                break
    if root is None:
        return []
    try:
        proc = psutil.Process(root)
        return [root, *(c.pid for c in proc.children(recursive=True))]
    except psutil.Error:
        return []


_PSS_EVERY_S = 5.0  # smaps_rollup walks every page table: ~75 ms with a 4 GB model mapped
_last_pss: tuple[float, int | None] = (-_PSS_EVERY_S, None)


def read_memory(pids: list[int]) -> MemorySample | None:
    """RSS/anon/file of the server processes at every call; PSS every few seconds only, so the
    sampler itself does not take CPU from the server it measures."""
    global _last_pss
    rss = anon = file = 0
    pss: int | None = 0
    fresh_pss = time.monotonic() - _last_pss[0] >= _PSS_EVERY_S
    alive = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        alive += 1
        fields = {}
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024
        rss += fields.get("VmRSS", 0)
        anon += fields.get("RssAnon", 0)
        file += fields.get("RssFile", 0)
        if not fresh_pss:
            continue
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:") and pss is not None:
                    pss += int(line.split()[1]) * 1024
        except OSError:
            pss = None
    if fresh_pss:
        _last_pss = (time.monotonic(), pss)
    return MemorySample(0.0, rss, _last_pss[1], anon, file, alive) if alive else None


def server_log_path(pids: list[int], explicit: Path | None) -> Path | None:
    """The server's requests.jsonl: given, or found from the server's environment and cwd."""
    if explicit is not None:
        return explicit / "requests.jsonl" if explicit.is_dir() else explicit
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            log_dir = Path(proc.environ().get("GPTAPI_LOG_DIR", "logs"))
            path = (
                log_dir if log_dir.is_absolute() else Path(proc.cwd()) / log_dir
            ) / "requests.jsonl"
        except (psutil.Error, OSError):
            continue
        if path.exists():
            return path
    return None


def join_server_log(
    results: list[RequestResult], log_path: Path | None, wait_s: float = 3.0
) -> int:
    """Attach the server's log line to each request, by request id. The server writes a line
    after the response is sent, from a background thread: wait briefly for the last."""
    if log_path is None:
        return 0
    wanted = {r.request_id for r in results if r.request_id}
    deadline = time.monotonic() + wait_s
    by_id: dict[str, dict[str, Any]] = {}
    while True:
        if log_path.exists():
            for line in log_path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("request_id") in wanted and entry.get("memory_end"):
                    entry.pop("text", None)
                    by_id[entry["request_id"]] = entry
        if len(by_id) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for r in results:
        if r.request_id in by_id:
            r.server = by_id[r.request_id]
    return len(by_id)


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
            await self._one(client, user, self.corpus.pick(self.config.mix, user, sent, self._rng))
            sent += 1

    async def _open_loop(self, client: httpx.AsyncClient) -> None:
        assert self.config.rate
        tasks: list[asyncio.Task[None]] = []
        sent = 0
        total = self.expected or None
        while (total is None or sent < total) and self._more(0):
            user = sent % self.config.users
            task_input = self.corpus.pick(self.config.mix, user, sent, self._rng)
            tasks.append(asyncio.create_task(self._one(client, user, task_input)))
            sent += 1
            await asyncio.sleep(self._rng.expovariate(self.config.rate))
        await asyncio.gather(*tasks)

    async def _one(self, client: httpx.AsyncClient, user: int, task_input: TaskInput) -> None:
        start = self._elapsed()
        path, body = request_for(task_input, self.config.max_tokens, self.config.api)
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
        return 200, final, request_id, first, gaps

    async def _sample(self) -> None:
        while True:
            sample = await asyncio.to_thread(read_memory, self.pids) if self.pids else None
            if sample is not None:
                sample.t_s = self._elapsed()
                self.samples.append(sample)
            await asyncio.sleep(0.4)


def request_for(task_input: TaskInput, max_tokens: int, api: str) -> tuple[str, dict[str, Any]]:
    """The route and body for one corpus input: a task endpoint, or its /v1 equivalent."""
    if api != "openai":
        return task_input.path, {**task_input.body, "max_tokens": max_tokens}
    body = task_input.body
    common = {"model": "gptapi", "max_tokens": max_tokens, "temperature": 0}
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
