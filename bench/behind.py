"""Short requests behind long documents, with streams running (issue 27's situation), against
any OpenAI-compatible server (gptapi or llama-server):

    python -m bench.behind --base-url http://127.0.0.1:8000 --api-key KEY --rounds 3 --out DIR

Per round: 4 streams decode long stories (``/v1/completions``, streamed); once all 4 stream,
3 distinct documents arrive together (``max_tokens`` 1; ``--doc-entries`` 110 = ~2,600 tokens
of Gemma's vocabulary, 11 = ~270 for the heavy model); 0.5 s later one short
request (a ~20-token prompt, streamed). Reported: the streams' **longest gap** between two
tokens while the documents are computed (what a streaming user feels; a p95 over all gaps hides
it), the **TTFT of the short request** that arrived behind them, and the documents' latency.
Not a test: nothing asserts. Results: DIR/behind.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

STORY = "Once upon a time, in a harbor town at the edge of the sea,"
SHORT = "Q: What colour is the sky on a clear day?\nA:"
CARGO = ("tea", "salt", "iron")


def document(tag: str, entries: int) -> str:
    lines = (
        f"Entry {i}: ship {tag}-{i} unloaded {i * 7 % 53} crates of {CARGO[i % 3]}."
        for i in range(entries)
    )
    return f"[{tag}] " + " ".join(lines) + "\nSummary:"


async def stream(
    client: httpx.AsyncClient, prompt: str, max_tokens: int, times: list[float]
) -> None:
    """Streams a completion, appending the arrival time of every chunk with text to ``times``
    (kept when the task is cancelled)."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "stream": True, "temperature": 0}
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            data = line[6:] if line.startswith("data: ") else "[DONE]"
            if data != "[DONE]" and json.loads(data)["choices"][0].get("text"):
                times.append(time.perf_counter())


async def one_round(client: httpx.AsyncClient, doc_entries: int) -> dict[str, Any]:
    chunks: list[list[float]] = [[] for _ in range(4)]
    streams = [
        asyncio.create_task(stream(client, f"{STORY} ({i})", 1000, chunks[i])) for i in range(4)
    ]
    while not all(len(c) >= 3 for c in chunks):  # every stream is decoding
        if any(s.done() for s in streams):
            raise RuntimeError("a stream ended before the documents arrived")
        await asyncio.sleep(0.1)
    sent = time.perf_counter()

    async def document_done() -> float:
        prompt = document(uuid.uuid4().hex[:8], doc_entries)
        body = {"prompt": prompt, "max_tokens": 1, "temperature": 0}
        (await client.post("/v1/completions", json=body)).raise_for_status()
        return time.perf_counter()

    docs = [asyncio.create_task(document_done()) for _ in range(3)]
    await asyncio.sleep(0.5)
    short: list[float] = []
    short_sent = time.perf_counter()
    await stream(client, SHORT, 8, short)
    doc_done = list(await asyncio.gather(*docs))
    done = max(doc_done)
    for stream_task in streams:
        stream_task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    gaps = [
        b - a for times in chunks for a, b in itertools.pairwise(times) if b > sent and a < done
    ]
    return {
        "streams_longest_gap_s": max(gaps) if gaps else None,
        "short_ttft_s": short[0] - short_sent if short else None,
        "documents_latency_s": sorted(t - sent for t in doc_done),
    }


async def run(base_url: str, api_key: str, rounds: int, doc_entries: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {api_key}"}
    results = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=3600) as client:
        for i in range(rounds):
            result = await one_round(client, doc_entries)
            print(json.dumps({"round": i, **result}), flush=True)
            results.append(result)
            await asyncio.sleep(2)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.behind",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--doc-entries", type=int, default=110, help="length of each document")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.base_url, args.api_key, args.rounds, args.doc_entries))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "behind.json").write_text(json.dumps({"base_url": args.base_url,
                                                      "doc_entries": args.doc_entries,
                                                      "rounds": results}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
