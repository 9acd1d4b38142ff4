"""The API as users of LangChain and LiteLLM use it (the openai SDK is used throughout the other
tests): plain calls, streaming, and LangChain's structured output (json_schema by default)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import BaseModel

from tests.conftest import API_KEY, LiveServer


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture()
def chat_model(live_server: LiveServer) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=f"{live_server.base_url}/v1", api_key=API_KEY, model="gptapi",  # type: ignore[arg-type]
        temperature=0, max_tokens=24, timeout=120,
    )  # fmt: skip


def test_langchain_invoke_and_stream(chat_model: Any) -> None:
    reply = chat_model.invoke("Say hello.")
    assert isinstance(reply.content, str) and reply.content
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    streamed = "".join(str(chunk.content) for chunk in chat_model.stream("Say hello."))
    assert streamed == reply.content  # temperature 0: the same text either way


def test_langchain_with_structured_output(chat_model: Any) -> None:
    structured = chat_model.bind(max_tokens=60).with_structured_output(Person, include_raw=True)
    out = structured.invoke("A person: Ada Lovelace, 36 years old.")
    assert out["raw"] is not None  # the request itself succeeded (json_schema accepted)
    if out["raw"].response_metadata["finish_reason"] == "stop":
        assert out["parsing_error"] is None
        assert isinstance(out["parsed"], Person)


def test_litellm_completion_and_stream(live_server: LiveServer) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import
    import litellm

    common = {
        "model": "openai/gptapi", "api_base": f"{live_server.base_url}/v1", "api_key": API_KEY,
        "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
        "temperature": 0,
    }  # fmt: skip
    response = litellm.completion(**common)
    text = response.choices[0].message.content
    assert text
    chunks = litellm.completion(**common, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
