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

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a fast-tier test tried to load a model: move it to tests/system")

    monkeypatch.setattr(gptapi.app, "load_llama_engine", refuse)
    monkeypatch.setattr(gptapi.engine.llama, "load_engine", refuse)
    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", refuse)
    monkeypatch.setattr(llama_cpp.Llama, "__init__", refuse)
    yield
