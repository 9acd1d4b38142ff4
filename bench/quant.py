"""Which quantization a 2-vCPU VM should run: paired rounds over GGUFs of one model shape
(the heavy twin as Q8_0, Q4_K_M and Q4_0: ``make_twin_model.py --type``).

    python -m bench.quant --models Q8_0=models/gemma-3-4b-it-twin-Q8_0.gguf,Q4_K_M=...,Q4_0=... \\
        --rounds 2 --out docs/results/quant-2026-12-07

Each round starts one server per model in turn (the order rotates each round; 8 slots, 4096
tokens each, prompt cache off, limits lifted: ``bench/serverenv.py``) and, on it: the memory
once loaded (RSS, anonymous, file-backed); after a short warm-up request, one request alone
with a ~400-token prompt (prefill tok/s = its prompt tokens / time to first token; decode tok/s
as the server timed it); then
``gptapi-bench run`` at each user level (one request per user, ``--mix``, default short generate
prompts, ``--max-tokens``): aggregate output tok/s, p50 latency, peak memory. After the rounds,
each model once with ``--workers 2``: the PSS of both workers together after each served a
request (weights mapped from the file are shared; anonymous copies are not). Results:
OUT/results.json and OUT/results.md. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from bench.procs import MemoryReader, find_server_pids, free_port, stop, wait_ready
from bench.report import cpu_model
from bench.serverenv import API_KEY, server_env

LONG_PROMPT = " ".join(
    f"Line {i}: the harbor keeps {i * 7 % 53} boats, {i * 3 % 17} cranes and one lighthouse."
    for i in range(20)
)  # ~400 tokens on Gemma's vocabulary


def start(model: Path, out: Path, name: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = server_env(
        threads=2, ctx=4096, request_timeout_s=3600, model=model,
        GPTAPI_PROMPT_CACHE_MB="0", GPTAPI_LOG_DIR=str(out / f"logs-{name}"),
    )  # fmt: skip
    log = out / f"server-{name}.log"
    cmd = [sys.executable, "-m", "gptapi.cli", "serve", "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/ready", proc, log, times=3 if extra else 1)
    return proc, url


def alone(url: str, prompt: str = LONG_PROMPT) -> dict[str, float]:
    """One request, nothing else running: prefill and decode rates as the server timed them
    (a twin's random weights often write tokens that print as nothing, so not from a stream)."""
    body = {"prompt": prompt, "max_tokens": 32, "temperature": 0}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    response = httpx.post(f"{url}/generate-text", json=body, headers=headers, timeout=900)
    response.raise_for_status()
    reply = response.json()
    prefill_s = reply["timings"]["time_to_first_token_ms"] / 1000
    return {
        "prompt_tokens": reply["usage"]["prompt_tokens"],
        "prefill_tok_s": reply["usage"]["prompt_tokens"] / prefill_s,
        "decode_tok_s": reply["timings"]["tokens_per_s"],
    }


def memory(url: str, root: int | None = None) -> dict[str, int]:
    """Summed over the server's processes: ``root`` (the process started) and its children
    (``--workers``: the socket's owner found by port may be one worker only)."""
    sample = MemoryReader(find_server_pids(url, root), pss_every_s=0).read()
    assert sample is not None
    return {"rss": sample.rss, "anon": sample.anon, "file": sample.file, "pss": sample.pss or 0}


def load(url: str, users: int, max_tokens: int, mix: str, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "bench.cli", "run", "--base-url", url, "--api-key", API_KEY,
        "--users", str(users), "--requests-per-user", "1", "--max-tokens", str(max_tokens),
        "--mix", mix, "--timeout", "3600", "--time-cap", "3600", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    summary: dict[str, Any] = json.loads((out / "result.json").read_text())["summary"]
    return {
        "output_tok_s": summary["output_tokens_per_s"],
        "p50_latency_s": summary["latency_s"]["p50"],
        "ok": summary["ok"],
        "requests": summary["requests"],
        "rss_peak": summary.get("memory", {}).get("rss_peak"),
        "anon_peak": summary.get("memory", {}).get("anon_peak"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quant",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", required=True, help="NAME=PATH,... (same shape)")
    parser.add_argument("--users", default="10,40")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--mix",
        default="generate=1",
        help="task mix of the load (default: short generate prompts; the heavy twin needs "
        "~40 s per 800 prompt tokens, so the default mix's documents make a 40-user level "
        "last a quarter of an hour)",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--workers-only",
        action="store_true",
        help="only the --workers 2 measurement; the rounds from OUT/runs.jsonl",
    )
    args = parser.parse_args(argv)
    models = {n: Path(p) for n, _, p in (m.partition("=") for m in args.models.split(","))}
    users = [int(u) for u in args.users.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    names = list(models)
    runs: list[dict[str, Any]] = []
    if args.workers_only:
        runs = [json.loads(line) for line in (args.out / "runs.jsonl").read_text().splitlines()]
    for round_ in range(0 if args.workers_only else args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            proc, url = start(models[name], args.out, f"{name}-r{round_}")
            try:
                row: dict[str, Any] = {"model": name, "round": round_, "loaded": memory(url)}
                # A first request touches every weight page (a mapped file's are faulted in
                # then): not what "alone" measures.
                alone(url, "Hello there.")
                row["alone"] = alone(url)
                for level in users:
                    folder = args.out / f"{name}-r{round_}-u{level}"
                    row[f"u{level}"] = load(url, level, args.max_tokens, args.mix, folder)
                runs.append(row)
                print(json.dumps(row), flush=True)
                (args.out / "runs.jsonl").open("a").write(json.dumps(row) + "\n")
            finally:
                stop(proc)
    workers = {}
    for name in names:
        proc, url = start(models[name], args.out, f"{name}-workers2", "--workers", "2")
        try:
            for _ in range(4):  # the kernel spreads connections: each worker serves one
                alone(url)
            workers[name] = memory(url, proc.pid)
            print(json.dumps({"model": name, "workers2": workers[name]}), flush=True)
        finally:
            stop(proc)
    result = {
        "command": "python -m bench.quant " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": cpu_model(), "date": time.strftime("%Y-%m-%d"),
        "sizes": {n: p.stat().st_size for n, p in models.items()},
        "runs": runs, "workers2": workers,
    }  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "results.md").write_text(table(result, users))
    print(table(result, users))
    return 0


def table(result: dict[str, Any], users: list[int]) -> str:
    def med(name: str, *path: str) -> float:
        values = []
        for run in result["runs"]:
            if run["model"] == name:
                value: Any = run
                for key in path:
                    value = value[key]
                values.append(float(value))
        return median(values)

    gib = 2**30
    head = ["model", "file GB", "prefill tok/s", "decode tok/s (1 stream)"]
    head += [f"{u} users: tok/s, p50 s" for u in users]
    head += ["RSS / anon / file GiB (loaded)", "2 workers: PSS GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, size in result["sizes"].items():
        cells = [name, f"{size / 1e9:.2f}", f"{med(name, 'alone', 'prefill_tok_s'):.1f}",
                 f"{med(name, 'alone', 'decode_tok_s'):.2f}"]  # fmt: skip
        cells += [
            f"{med(name, f'u{u}', 'output_tok_s'):.2f}, {med(name, f'u{u}', 'p50_latency_s'):.1f}"
            for u in users
        ]
        loaded = [med(name, "loaded", k) / gib for k in ("rss", "anon", "file")]
        cells.append(" / ".join(f"{v:.2f}" for v in loaded))
        cells.append(f"{result['workers2'][name]['pss'] / gib:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nMedians over rounds; every run: results.json.\n"


if __name__ == "__main__":
    sys.exit(main())
