"""The gptapi-bench workload for Locust, a load tool nobody here wrote, to cross-check
gptapi-bench's numbers on the same server (docs/stress-test.md):

    GPTAPI_API_KEY=KEY locust -f bench/locustfile.py --headless -u 40 -r 40 --run-time 120s \\
        --host http://127.0.0.1:8000 --csv out/locust

Each simulated user sends the next corpus input as soon as its last answer arrived (closed
loop, like gptapi-bench). Output tokens are counted from the responses and printed at the end
with the run's tokens/s; latency percentiles are Locust's own (the CSV files)."""

from __future__ import annotations

import os
import random
import time
from typing import Any

from locust import HttpUser, events, task

from bench.corpus import Corpus, parse_mix

_corpus = Corpus()
_mix = parse_mix(os.environ.get("BENCH_MIX", "generate=1,summarize=1,answer=1"))
_max_tokens = int(os.environ.get("BENCH_MAX_TOKENS", "32"))
_rng = random.Random(1234)  # noqa: S311 - load shape, not security
_totals = {"tokens": 0, "started": 0.0, "ended": 0.0}


class ApiUser(HttpUser):
    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {os.environ['GPTAPI_API_KEY']}"
        if not _totals["started"]:
            _totals["started"] = time.perf_counter()

    @task
    def one_request(self) -> None:
        item = _corpus.pick(_mix, _rng)
        body = {**item.body, "max_tokens": _max_tokens}
        with self.client.post(item.path, json=body, name=item.path, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                return
            _totals["tokens"] += int(r.json()["usage"]["completion_tokens"])
            _totals["ended"] = time.perf_counter()


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _report(environment: Any, **_: Any) -> None:
    wall = _totals["ended"] - _totals["started"]
    rate = _totals["tokens"] / wall if wall > 0 else 0.0
    print(f"locust: output tokens {_totals['tokens']:.0f} in {wall:.1f}s = {rate:.2f} tok/s")
