"""Shared fixtures, and the one rule that sorts the tests into tiers, by folder:

- ``tests/unit/``: the fast tier (``make test-fast``), in process, no model loaded; a fake
  engine (``tests/fakes.py``) where one is needed, for the code around the engine only.
  ``tests/unit/conftest.py`` makes loading a model there an error.
- ``tests/system/``: the real llama.cpp engine on the embedded model, servers as users start
  them, real Redis, nginx and Prometheus.

Both trees mirror ``src/gptapi``; shared helpers live in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gptapi.modelfile import embedded_model_path

API_KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_UNIT):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session")
def model_path() -> Path:
    return embedded_model_path()


@pytest.fixture(scope="session")
def tokenizer(model_path: Path):  # type: ignore[no-untyped-def]
    """An independent tokenizer (vocab only) to check the server's token counts against. As the
    server does with user text: special-token text is not parsed (``special=True`` to parse)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(model_path), vocab_only=True, verbose=False)
    return lambda text, special=False: llm.tokenize(text.encode(), add_bos=True, special=special)


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process apps write their JSON-lines logs under the test's tmp dir, not the repo."""
    monkeypatch.setenv("GPTAPI_LOG_DIR", str(tmp_path / "logs"))


class LiveServer:
    def __init__(self, base_url: str, proc: subprocess.Popen[str], log: Path) -> None:
        self.base_url = base_url
        self.proc = proc
        self.log = log
        self.log_dir = log.parent / "logs"

    def client(self, key: str | None = API_KEY, timeout: float = 120) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)


def start_server(
    tmp: Path, *args: str, env: dict[str, str] | None = None, probe: bool = True
) -> LiveServer:
    """Start `gptapi serve` and wait until it is ready: by polling /ready, or (probe=False, for
    tests that count every request from this address) by reading its log."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    full_env = {
        **os.environ,
        "GPTAPI_API_KEYS": API_KEY,
        "GPTAPI_LOG_DIR": str(tmp / "logs"),
        "GPTAPI_RATE_LIMIT": "100000/minute",
        "GPTAPI_RATE_LIMIT_BURST": "100000/second",
        "GPTAPI_RATE_LIMIT_UNAUTHENTICATED": "100000/minute",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gptapi.cli", "serve", "--port", str(port), *args],
        env=full_env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 120
    if not probe:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log.read_text()}")
            text = log.read_text()
            if "ready: serving" in text and "Uvicorn running on" in text:
                return server
            time.sleep(0.2)
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log.read_text()}")
            try:
                if c.get("/ready").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server not ready in 120 s:\n{log.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`gptapi serve` in a subprocess on the embedded model, as a user would start it."""
    server = start_server(tmp_path_factory.mktemp("live"))
    yield server
    stop_server(server)


@pytest.fixture()
def oai(live_server: LiveServer) -> Iterator[Any]:
    """The official openai SDK on the live server's /v1, as its users make one."""
    import openai

    sdk = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key=API_KEY, timeout=120)
    yield sdk
    sdk.close()


@pytest.fixture()
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with live_server.client() as c:
        yield c


@pytest.fixture()
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: `make test` installs it (Debian: redis-server)"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
        )
        if ping.stdout.strip() == "PONG":
            break
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
