"""Scale-out on one machine: 2 replicas on the real embedded model behind Debian's nginx running
deploy/nginx-gptapi.conf (ports substituted), rate limits shared through a real redis-server."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, LiveServer, free_port, start_server, stop_server
from tests.helpers import REPO, wait_until

DEPLOY = REPO / "deploy"
GOOD = {"prompt": "The capital of France is", "max_tokens": 4}
LIMIT = 20


def nginx_binary() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).exists():
            return candidate
    raise AssertionError("nginx is missing: `make test` installs it (Debian: nginx)")


@pytest.fixture()
def replicas(tmp_path: Path, redis_url: str) -> Iterator[list[LiveServer]]:
    env = {
        "GPTAPI_RATE_LIMIT": f"{LIMIT}/minute",
        "GPTAPI_RATE_LIMIT_STORAGE": redis_url,
        "GPTAPI_FORWARDED_ALLOW_IPS": "127.0.0.1",
        "GPTAPI_SLOTS": "4",
        "GPTAPI_N_CTX": "512",
        "GPTAPI_N_THREADS": "1",  # 2 replicas x 1 thread on 2 cores
    }
    servers: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(start_server(tmp_path / name, env=env))
        yield servers
    finally:
        for server in servers:
            stop_server(server)


@pytest.fixture()
def balancer(tmp_path: Path, replicas: list[LiveServer]) -> Iterator[str]:
    port = free_port()
    site = (DEPLOY / "nginx-gptapi.conf").read_text()
    site = site.replace("127.0.0.1:8001", replicas[0].base_url.removeprefix("http://"))
    site = site.replace("127.0.0.1:8002", replicas[1].base_url.removeprefix("http://"))
    site = site.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")
    root = tmp_path / "nginx"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (root / sub).mkdir(parents=True)
        (root / sub).chmod(0o777)  # nginx's workers may run as nobody
    (root / "gptapi.conf").write_text(site)
    (root / "nginx.conf").write_text(
        f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {root}/logs/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/gptapi.conf;
}}
"""
    )
    proc = subprocess.Popen(
        [nginx_binary(), "-p", str(root), "-c", str(root / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=(root / "logs" / "stderr.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def served_generations(server: LiveServer) -> int:
    lines = (server.log_dir / "requests.jsonl").read_text().splitlines()
    return sum(json.loads(line)["route"] == "/generate-text" for line in lines)


def test_two_replicas_share_traffic_and_a_keys_rate_limit(
    balancer: str, replicas: list[LiveServer]
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=balancer, headers=headers, timeout=120) as c:

        def one(_: int) -> httpx.Response:
            return c.post("/generate-text", json=GOOD)

        with ThreadPoolExecutor(8) as pool:
            first = list(pool.map(one, range(12)))
        assert [r.status_code for r in first] == [200] * 12
        # Streaming passes through nginx unbuffered, chunk by chunk.
        with c.stream("POST", "/generate-text", json={**GOOD, "stream": True}) as r:
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert r.status_code == 200 and events[-1] == "data: [DONE]"
        rest = [c.post("/generate-text", json=GOOD) for _ in range(LIMIT)]
    statuses = [r.status_code for r in rest]
    # 13 used above; the key's 20/minute holds across both replicas together.
    assert statuses == [200] * (LIMIT - 13) + [429] * 13
    assert rest[-1].headers["retry-after"].isdigit()
    wait_until(
        lambda: sum(served_generations(s) for s in replicas) == 13 + LIMIT,
        what="both replicas' request logs holding every request",
    )
    served = [served_generations(s) for s in replicas]
    assert all(n >= 3 for n in served), served  # least_conn spread the load over both
    assert sum(served) == 13 + LIMIT  # every request went to exactly one replica
