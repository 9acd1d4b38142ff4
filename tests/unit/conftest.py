"""The fast tier loads no model: a test here that would (the real engine's loader, a llama.cpp
model object) fails at once instead of silently costing seconds and proving something about the
engine that only the system tier may claim."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


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
