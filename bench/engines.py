"""Engine comparison: aggregate output tokens/s, latency and time to first token at several
concurrency levels, for gptapi's batched engine, its pool engine, a one-at-a-time baseline and,
when given, llama.cpp's own C++ ``llama-server`` — same model, same threads, one run.

    python -m bench.engines --users 1,4,10,40 --llama-server /path/to/llama-server

Closed loop: each simulated user sends its next request when its last one ends; every request
has a distinct prompt; temperature 0; a fixed number of new tokens. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.procs import free_port, stop
from bench.report import cpu_model
from bench.streamed import stream_request
from bench.workloads import WORKLOADS, Workload, distinct
from gptapi.modelfile import inspect_gguf
from gptapi.prompts import render_template

API_KEY = "bench-key-0123456789abcdef"


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
    latency_p50_s: float
    latency_p95_s: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    rss_mib: float
    rss_anon_mib: float
    rss_file_mib: float
    itl_p50_s: float | None = None  # inter-token latency, streamed runs only
    itl_p95_s: float | None = None


@dataclass
class Target:
    name: str
    command: list[str]
    kind: str  # "gptapi" or "llama-server"
    env: dict[str, str] = field(default_factory=dict)
    # gptapi's /generate-text wraps the prompt in the model's chat template, if it has one;
    # llama-server's /completion takes raw text, so it is sent the same rendered text and
    # both engines process the same tokens (the prompt-tokens column shows it).
    render: Callable[[str], str] = str
    prompt: Workload = distinct  # the i-th request's prompt
    stream: bool = False  # stream responses: client-side TTFT and inter-token gaps
    raw: bool = False  # both engines get the prompt as raw text (gptapi: /v1/completions)


def proc_memory(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def request_body(target: Target, i: int, new_tokens: int) -> dict[str, Any]:
    """The i-th request's body: gptapi's /generate-text, or llama-server's /completion with the
    text gptapi would feed its engine."""
    if target.kind == "gptapi":
        body: dict[str, Any] = {"prompt": target.prompt(i), "max_tokens": new_tokens,
                                "temperature": 0}  # fmt: skip
        if target.raw:
            body |= {"model": "gptapi", "stream_options": {"include_usage": True}}
        return body
    prompt = target.prompt(i) if target.raw else target.render(target.prompt(i))
    return {"prompt": prompt, "n_predict": new_tokens, "temperature": 0}


async def one_request(
    client: httpx.AsyncClient, target: Target, i: int, new_tokens: int
) -> tuple[int, float | None, int, int, int, list[float]]:
    """Status, time to first token, completion, prompt and cached prompt tokens, and (streamed)
    the gaps between tokens."""
    if target.stream:
        s = await stream_request(
            client, target.kind, request_body(target, i, new_tokens), raw=target.raw
        )
        return (s.status, s.ttft_s, s.completion_tokens, s.prompt_tokens, s.cached_tokens,
                s.gaps_s)  # fmt: skip
    return (*await _one_plain(client, target, i, new_tokens), [])


async def _one_plain(
    client: httpx.AsyncClient, target: Target, i: int, new_tokens: int
) -> tuple[int, float | None, int, int, int]:
    start = time.perf_counter()
    if target.kind == "gptapi":
        r = await client.post("/generate-text", json=request_body(target, i, new_tokens))
        if r.status_code != 200:
            return r.status_code, None, 0, 0, 0
        body = r.json()
        ttft_ms = body["timings"]["time_to_first_token_ms"]
        usage = body["usage"]
        ttft = None if ttft_ms is None else ttft_ms / 1000
        return (
            200,
            ttft,
            usage["completion_tokens"],
            usage["prompt_tokens"],
            usage.get("cached_tokens", 0),
        )
    # Each engine as shipped: llama-server's prompt cache (cache_prompt) stays on, as gptapi's
    # prefix sharing does; each reuses a prompt's opening tokens in its own way.
    r = await client.post("/completion", json=request_body(target, i, new_tokens))
    latency = time.perf_counter() - start
    if r.status_code != 200:
        return r.status_code, None, 0, 0, 0
    body = r.json()
    t = body["timings"]
    # llama-server reports no arrival-to-first-token time; take the latency minus the time spent
    # producing the tokens after the first. Its predicted_ms starts when the prompt is done, the
    # moment its first token is sampled, so it already is that time (subtracting
    # predicted_ms - predicted_per_token_ms, as before 2026-11-29, overstated TTFT by 1/n).
    ttft = latency - t["predicted_ms"] / 1000
    # prompt_n counts only the tokens it computed; cache_n those it reused from a slot's cache.
    cached = int(t.get("cache_n", 0))
    return 200, ttft, int(body["tokens_predicted"]), int(t["prompt_n"]) + cached, cached


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
    peak: dict[str, float] = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            for k, v in proc_memory(pid).items():
                peak[k] = max(peak[k], v)
            await asyncio.sleep(0.25)

    async def user(u: int, client: httpx.AsyncClient) -> None:
        for k in range(per_user):
            for attempt in (1, 2):
                start = time.perf_counter()
                try:
                    status, ttft, n, n_prompt, n_cached, gaps = await one_request(
                        client, target, first_index + u * per_user + k, new_tokens
                    )
                    break
                except httpx.RemoteProtocolError:
                    # The server closed a kept-alive connection as this request went out on
                    # it (llama-server's keep-alive timeout): it never saw it; send it again.
                    if attempt == 2:
                        raise
            latency = time.perf_counter() - start
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
    ok = [r for r in records if r.status == 200]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    gaps = [g for r in ok for g in r.gaps_s]
    tokens = sum(r.completion_tokens for r in ok)
    level = Level(
        users=users,
        requests=len(records),
        errors=len(records) - len(ok),
        wall_s=wall,
        output_tokens=tokens,
        prompt_tokens_mean=sum(r.prompt_tokens for r in ok) / len(ok) if ok else 0.0,
        cached_tokens_mean=sum(r.cached_tokens for r in ok) / len(ok) if ok else 0.0,
        tok_per_s=tokens / wall,
        latency_p50_s=percentile([r.latency_s for r in ok], 0.5),
        latency_p95_s=percentile([r.latency_s for r in ok], 0.95),
        ttft_p50_s=percentile(ttfts, 0.5) if ttfts else None,
        ttft_p95_s=percentile(ttfts, 0.95) if ttfts else None,
        rss_mib=peak["VmRSS"],
        rss_anon_mib=peak["RssAnon"],
        rss_file_mib=peak["RssFile"],
        itl_p50_s=percentile(gaps, 0.5) if gaps else None,
        itl_p95_s=percentile(gaps, 0.95) if gaps else None,
    )
    return level, records


def wait_ready(base_url: str, kind: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    path = "/ready" if kind == "gptapi" else "/health"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited early; see {log}")
        try:
            if httpx.get(base_url + path, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{kind} not ready in 900 s; see {log}")


@dataclass
class Started:
    target: Target
    proc: subprocess.Popen[bytes]
    base_url: str


def start_target(target: Target, new_tokens: int, logs: Path) -> Started:
    """Start a server, wait until it is ready and warm it up (weights faulted in, graphs built)
    so nothing after this times a cold start."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{target.name}.log"
    cmd = [c.replace("{port}", str(port)) for c in target.command]
    env = {**os.environ, "GPTAPI_LOG_DIR": str(logs / f"{target.name}-jsonl"), **target.env}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    started = Started(target, proc, f"http://127.0.0.1:{port}")
    try:
        wait_ready(started.base_url, target.kind, proc, log)
        asyncio.run(run_level(started.base_url, target, proc.pid, 1, 1, new_tokens, 10_000))
    except BaseException:
        stop(proc)
        raise
    return started


def run_target(
    target: Target, users_levels: list[int], per_user: dict[int, int], new_tokens: int, logs: Path
) -> list[Level]:
    started = start_target(target, new_tokens, logs)
    levels: list[Level] = []
    try:
        index = 0
        for users in users_levels:
            level, _ = asyncio.run(
                run_level(
                    started.base_url,
                    target,
                    started.proc.pid,
                    users,
                    per_user[users],
                    new_tokens,
                    index,
                )
            )
            index += users * per_user[users]
            levels.append(level)
            print(format_row(target.name, level), flush=True)
    finally:
        stop(started.proc)
    return levels


def run_interleaved(
    chosen: list[Target],
    users_levels: list[int],
    per_user: dict[int, int],
    new_tokens: int,
    rounds: int,
    logs: Path,
) -> dict[str, list[Level]]:
    """All servers up at once, each level run ``rounds`` times per server, alternating
    A B, B A, ... so the VM's minute-to-minute speed drift hits every server alike. The servers
    not being measured are frozen (SIGSTOP): an idle server's timers and samplers would
    otherwise take CPU from the one being measured."""
    running: list[Started] = []
    results: dict[str, list[Level]] = {t.name: [] for t in chosen}
    try:
        for target in chosen:
            running.append(start_target(target, new_tokens, logs))
            running[-1].proc.send_signal(signal.SIGSTOP)
        index = 0
        for users in users_levels:
            for r in range(rounds):
                for started in running if r % 2 == 0 else running[::-1]:
                    started.proc.send_signal(signal.SIGCONT)
                    time.sleep(1)  # let the resumed server run the timers it missed first
                    level, _ = asyncio.run(
                        run_level(
                            started.base_url,
                            started.target,
                            started.proc.pid,
                            users,
                            per_user[users],
                            new_tokens,
                            index,
                        )
                    )
                    started.proc.send_signal(signal.SIGSTOP)
                    results[started.target.name].append(level)
                    print(format_row(f"{started.target.name} #{r + 1}", level), flush=True)
                # Every server gets the same distinct prompts in a round; rounds differ.
                index += users * per_user[users]
    finally:
        for started in running:
            started.proc.send_signal(signal.SIGCONT)
            stop(started.proc)
    return results


def paired_summary(results: dict[str, list[Level]], reference: str) -> list[str]:
    """Per level: each engine's median over the rounds, and its tok/s and p95 latency as
    ratios to the reference engine's in the same round (min / median / max)."""
    lines = [
        f"Paired with `{reference}` (same round, same prompts):",
        "",
        "| engine | users | rounds | median tok/s | tok/s ratio min / median / max | "
        "median p95 latency (s) | p95 ratio min / median / max | "
        "p50 latency ratio min / median / max | median p50 TTFT (s) | "
        "p50 TTFT ratio min / median / max | median p95 inter-token (s) | "
        "p95 inter-token ratio min / median / max |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref_levels = results[reference]
    for name, levels in results.items():
        for users in dict.fromkeys(lv.users for lv in levels):
            mine = [lv for lv in levels if lv.users == users]
            ref = [lv for lv in ref_levels if lv.users == users]
            tok = _ratios(mine, ref, "tok_per_s")
            p95 = _ratios(mine, ref, "latency_p95_s")
            p50 = _ratios(mine, ref, "latency_p50_s")
            ttft = _ratios(mine, ref, "ttft_p50_s")
            itl = _ratios(mine, ref, "itl_p95_s")
            ttfts = [lv.ttft_p50_s for lv in mine if lv.ttft_p50_s is not None]
            itls = [lv.itl_p95_s for lv in mine if lv.itl_p95_s is not None]
            lines.append(
                f"| {name} | {users} | {len(mine)} | "
                f"{percentile([lv.tok_per_s for lv in mine], 0.5):.2f} | "
                f"{_spread(tok)} | "
                f"{percentile([lv.latency_p95_s for lv in mine], 0.5):.2f} | "
                f"{_spread(p95)} | {_spread(p50)} | "
                f"{percentile(ttfts, 0.5):.2f} | {_spread(ttft)} | "
                f"{percentile(itls, 0.5):.3f} | {_spread(itl)} |"
            )
    return lines


def _ratios(mine: list[Level], ref: list[Level], metric: str) -> list[float]:
    """Round by round, this engine's ``metric`` over the reference's (rounds where either has
    none, e.g. no TTFT, left out)."""
    out = []
    for a, b in zip(mine, ref, strict=True):
        x, y = getattr(a, metric), getattr(b, metric)
        if x is not None and y:
            out.append(x / y)
    return out


def _spread(ratios: list[float]) -> str:
    if not ratios:
        return "n/a"
    return f"{min(ratios):.2f} / {percentile(ratios, 0.5):.2f} / {max(ratios):.2f}"


def format_row(name: str, lv: Level) -> str:
    ttft = (
        f"{lv.ttft_p50_s:.2f} / {lv.ttft_p95_s:.2f}"
        if lv.ttft_p50_s is not None and lv.ttft_p95_s is not None
        else "n/a"
    )
    itl = (
        f"{lv.itl_p50_s:.3f} / {lv.itl_p95_s:.3f}"
        if lv.itl_p50_s is not None and lv.itl_p95_s is not None
        else "n/a"
    )
    return (
        f"| {name} | {lv.users} | {lv.requests} | {lv.errors} | {lv.prompt_tokens_mean:.1f} | "
        f"{lv.cached_tokens_mean:.1f} | {lv.tok_per_s:.1f} | "
        f"{lv.latency_p50_s:.2f} / {lv.latency_p95_s:.2f} | {ttft} | {itl} | "
        f"{lv.rss_mib:.0f} | {lv.rss_anon_mib:.0f} | {lv.rss_file_mib:.0f} |"
    )


HEADER = (
    "| engine | users | requests | errors | prompt tok/req | cached tok/req | output tok/s | "
    "latency p50 / p95 (s) | TTFT p50 / p95 (s) | inter-token p50 / p95 (s) | peak RSS MiB | "
    "peak anon MiB | peak file MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def targets(args: argparse.Namespace) -> list[Target]:
    gptapi = [sys.executable, "-m", "gptapi.cli", "serve", "--port", "{port}"]
    base_env = {
        "GPTAPI_API_KEYS": API_KEY,
        "GPTAPI_N_THREADS": str(args.threads),
        "GPTAPI_N_CTX": str(args.ctx),
        "GPTAPI_MAX_QUEUE": "1000",
        "GPTAPI_RATE_LIMIT": "1000000/minute",
        "GPTAPI_RATE_LIMIT_BURST": "1000000/second",
        "GPTAPI_RATE_LIMIT_UNAUTHENTICATED": "1000000/minute",
        "GPTAPI_TOKEN_RATE_LIMIT": "1000000000/minute",
        "GPTAPI_MAX_INFLIGHT_PER_KEY": "100000",
        "GPTAPI_REQUEST_TIMEOUT_S": "3600",
        "GPTAPI_LOG_LEVEL": "warning",
    }
    if args.model:
        base_env["GPTAPI_MODEL_PATH"] = str(args.model)
    out = [
        Target(
            "gptapi one-at-a-time (slots 1)",
            gptapi,
            "gptapi",
            {**base_env, "GPTAPI_ENGINE": "batched", "GPTAPI_SLOTS": "1"},
        ),
        Target(
            f"gptapi pool ({args.threads} contexts)",
            gptapi,
            "gptapi",
            {**base_env, "GPTAPI_ENGINE": "pool", "GPTAPI_SLOTS": str(args.threads)},
        ),
    ]
    out += [
        Target(
            f"gptapi batched (slots {s})",
            gptapi,
            "gptapi",
            {**base_env, "GPTAPI_ENGINE": "batched", "GPTAPI_SLOTS": str(s)},
        )
        for s in args.slots
    ]
    # A/B of settings: the batched engine again under each variant's extra GPTAPI_* values.
    for variant in args.variant:
        label, _, assignments = variant.partition(":")
        extra = dict(a.split("=", 1) for a in assignments.split(",") if a)
        out += [
            Target(
                f"gptapi batched (slots {s}) [{label}]",
                gptapi,
                "gptapi",
                {**base_env, "GPTAPI_ENGINE": "batched", "GPTAPI_SLOTS": str(s), **extra},
            )
            for s in args.slots
        ]
    if args.llama_server:
        model = str(args.model or _embedded_model())
        render = chat_renderer(Path(model))
        for np_ in args.server_np:
            out.append(
                Target(
                    f"llama-server -np {np_}",
                    [
                        str(args.llama_server),
                        "-m",
                        model,
                        "-t",
                        str(args.threads),
                        "-np",
                        str(np_),
                        "-c",
                        str(args.ctx * np_),
                        "--port",
                        "{port}",
                        "--host",
                        "127.0.0.1",
                        "--no-webui",
                    ],
                    "llama-server",
                    render=render,
                )
            )
    workload = WORKLOADS[args.workload]
    for target in out:
        target.prompt = workload
        target.stream = args.stream
        target.raw = args.raw
    return out


def chat_renderer(model: Path) -> Callable[[str], str]:
    """What gptapi's /generate-text feeds its engine for a prompt: the model's chat template
    around it when the model has one, else the prompt as it is."""
    template = inspect_gguf(model).metadata.get("tokenizer.chat_template")
    if not isinstance(template, str) or not template:
        return str

    def render(text: str) -> str:
        # No BOS text: llama-server adds the BOS token itself, as gptapi's engine does.
        return render_template(template, [{"role": "user", "content": text}])

    return render


def _embedded_model() -> Path:
    from gptapi.modelfile import embedded_model_path

    return embedded_model_path()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument("--users", default="1,4,10,40", help="concurrency levels")
    parser.add_argument(
        "--requests-per-user",
        default="1:5,4:3,10:3,40:1",
        help="users:requests pairs; levels not listed send 1 request per user",
    )
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="distinct",
        help="distinct: no two prompts share more than a few tokens; shared-instructions: "
        "one ~350-token instruction prefix, then a distinct short question; mixed-long: every "
        "4th request a distinct ~1,300-token document, the others distinct short prompts",
    )
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=512, help="context per slot")
    parser.add_argument("--slots", default="16", help="slot counts for the batched engine")
    parser.add_argument("--llama-server", type=Path, help="llama-server binary to compare with")
    parser.add_argument("--server-np", default="1,10,16", help="llama-server -np values")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE,...",
        help="also run the batched engine with these GPTAPI_* settings (repeatable)",
    )
    parser.add_argument("--only", help="comma-separated substrings of engine names to run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="more than 1: start all engines at once and alternate them round by round "
        "(paired comparison; the first llama-server engine chosen is the reference)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="stream every response: client-side TTFT and inter-token latency",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="with --stream: both engines get the prompt as raw text, no chat template "
        "(gptapi through /v1/completions); for the heavy twin, whose random weights answer "
        "a chat-rendered prompt with whitespace only",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.raw and not args.stream:
        parser.error("--raw needs --stream")
    args.slots = [int(s) for s in args.slots.split(",")]
    args.server_np = [int(s) for s in args.server_np.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    users_levels = [int(u) for u in args.users.split(",")]
    per_user = {u: 1 for u in users_levels}
    for pair in args.requests_per_user.split(","):
        u, _, k = pair.partition(":")
        per_user[int(u)] = int(k)
    model_name = (args.model or _embedded_model()).name
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.out / f"engines-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    chosen = targets(args)
    if args.only:
        keys = args.only.split(",")
        chosen = [t for t in chosen if any(k in t.name for k in keys)]
    summary: list[str] = []
    if args.rounds > 1:
        by_engine = run_interleaved(
            chosen, users_levels, per_user, args.new_tokens, args.rounds, out_dir / "logs"
        )
        results = {name: [asdict(lv) for lv in lvs] for name, lvs in by_engine.items()}
        reference = next((t.name for t in chosen if t.kind == "llama-server"), chosen[0].name)
        summary = ["", *paired_summary(by_engine, reference)]
        print("\n".join(summary), flush=True)
    for target in chosen if args.rounds == 1 else []:
        measured = run_target(target, users_levels, per_user, args.new_tokens, out_dir / "logs")
        results[target.name] = [asdict(lv) for lv in measured]
    meta = {
        "date": stamp,
        "command": "python -m bench.engines "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.machine()}",
        "model": model_name,
        "new_tokens": args.new_tokens,
        "threads": args.threads,
        "ctx_per_slot": args.ctx,
        "rounds": args.rounds,
        "workload": args.workload,
        "stream": args.stream,
        "raw": args.raw,
    }
    (out_dir / "engines.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        f"# Engine comparison — {model_name}",
        "",
        *(f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in meta.items()),
        "",
        HEADER,
    ]
    for name, levels in results.items():
        lines += [format_row(name, Level(**lv)) for lv in levels]
    lines += summary
    (out_dir / "engines.md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out_dir}/engines.md and engines.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
