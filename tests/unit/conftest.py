"""The fast tier loads no model: a test here that would (the real engine's loader, a llama.cpp
model object) fails at once instead of silently costing seconds and proving something about the
engine that only the system tier may claim."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEngine
from tests.helpers import serve_fake


@pytest.fixture()
def engine() -> FakeEngine:
    """The fake engine a test's app serves with (``client``)."""
    return FakeEngine()


@pytest.fixture()
def client(engine: FakeEngine) -> Iterator[TestClient]:
    """The app in process on ``engine``, with one key (``tests.helpers.AUTH``)."""
    with serve_fake(engine) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_model_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import llama_cpp

    import gptapi.app
    import gptapi.engine.llama

    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        # The app loads its engine in a task that turns exceptions into a 503 and a log line:
        # the attempt is also noted, and fails the test when it ends.
        attempts.append(repr(args)[:200])
        raise AssertionError("a fast-tier test tried to load a model: move it to tests/system")

    monkeypatch.setattr(gptapi.app, "load_llama_engine", refuse)
    monkeypatch.setattr(gptapi.engine.llama, "load_engine", refuse)
    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", refuse)
    monkeypatch.setattr(llama_cpp.Llama, "__init__", refuse)
    yield
    assert not attempts, f"a fast-tier test tried to load a model: {attempts}"
