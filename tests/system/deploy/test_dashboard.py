"""The Grafana dashboard against the real thing: Debian's Prometheus scrapes a running gptapi
(real model, with a key), and every PromQL query of deploy/grafana/gptapi.json returns data."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from scripts.make_dashboard import dashboard, queries
from tests.conftest import API_KEY, LiveServer, free_port
from tests.helpers import REPO, wait_until

ROOT = REPO
BOARD = ROOT / "deploy" / "grafana" / "gptapi.json"


def test_the_dashboard_file_is_the_generated_one() -> None:
    assert json.loads(BOARD.read_text()) == dashboard(), "run: python scripts/make_dashboard.py"


@pytest.fixture()
def prometheus(live_server: LiveServer, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make test` installs it (Debian: prometheus)"
    target = urlparse(live_server.base_url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: gptapi\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
        f"    authorization: {{type: Bearer, credentials: '{API_KEY}'}}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def query(url: str, expr: str) -> list[dict[str, object]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    live_server: LiveServer, prometheus: str
) -> None:
    deadline = time.monotonic() + 30
    while not query(prometheus, 'up{job="gptapi"} == 1'):
        assert time.monotonic() < deadline, "Prometheus never scraped gptapi with the key"
        time.sleep(0.5)
    with live_server.client() as c:
        # Traffic while it scrapes: generations (tokens, latencies, first tokens), a request the
        # prompt cache can serve again, and a refusal (over the context: context_length).
        for _ in range(2):
            for prompt in ("The capital of France is", "Once upon a time, a fox"):
                r = c.post("/generate-text", json={"prompt": prompt, "max_tokens": 4})
                assert r.status_code == 200
            assert c.post("/generate-text", json={"prompt": "x " * 5000}).status_code == 413
            time.sleep(1.1)  # traffic across scrapes (every 1 s), not a state to wait for

    def empty() -> list[str]:
        return [
            expr
            for expr in queries(dashboard())
            if not query(prometheus, expr.replace("$__rate_interval", "1m"))
        ]

    # Until every rate() has two samples: a few more scrapes.
    wait_until(lambda: not empty(), within_s=30, what="data for every dashboard query")
    # The values mean something: tokens were generated, memory and refusals are seen.
    tokens = query(prometheus, "sum(increase(gptapi_completion_tokens_total[1m]))")
    assert float(tokens[0]["value"][1]) > 0  # type: ignore[index]
    assert query(prometheus, 'gptapi_refusals_total{reason="context_length"} > 0')
    assert query(prometheus, 'gptapi_process_memory_bytes{kind="rss"} > 100e6')
