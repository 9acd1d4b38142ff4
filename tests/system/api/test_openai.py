"""The /v1 API through the official `openai` client, against the live server on the real model."""

from __future__ import annotations

import subprocess
import time

import httpx
import openai
import pytest

from tests.conftest import API_KEY, LiveServer
from tests.helpers import wait_for

PROMPT = "The secret word is PELICAN. Repeat the secret word.\nThe secret word is"


def test_models_lists_the_served_model(oai: openai.OpenAI) -> None:
    models = oai.models.list().data
    assert [m.id for m in models] == ["Gemma 3 270m"]
    assert models[0].object == "model"


def test_completion_answers_with_usage_and_finish_reason(oai: openai.OpenAI) -> None:
    result = oai.completions.create(
        model="anything", prompt=PROMPT, max_tokens=6, temperature=0, stop=["\n"]
    )
    assert result.object == "text_completion"
    assert result.id.startswith("cmpl-")
    assert result.created > 0
    choice = result.choices[0]
    assert "PELICAN" in choice.text
    assert choice.finish_reason in ("stop", "length")
    assert result.usage is not None
    assert 1 <= result.usage.completion_tokens <= 6
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_chat_completion_returns_an_assistant_message(oai: openai.OpenAI) -> None:
    result = oai.chat.completions.create(
        model="gptapi",
        messages=[
            {"role": "system", "content": "You repeat secret words."},
            {"role": "user", "content": "The secret word is PELICAN. Say it."},
        ],
        max_tokens=8,
        temperature=0,
    )
    assert result.object == "chat.completion"
    message = result.choices[0].message
    assert message.role == "assistant"
    assert message.content
    assert result.choices[0].finish_reason in ("stop", "length")
    assert 1 <= result.usage.completion_tokens <= 8  # type: ignore[union-attr]


def test_streamed_text_equals_the_plain_text_at_temperature_0(oai: openai.OpenAI) -> None:
    kwargs = {"model": "gptapi", "prompt": "Once upon a time", "max_tokens": 24,
              "temperature": 0, "seed": 7}  # fmt: skip
    plain = oai.completions.create(**kwargs).choices[0].text  # type: ignore[call-overload]
    chunks = list(
        oai.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})  # type: ignore[call-overload]
    )
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == plain
    assert len([c for c in chunks if c.choices and c.choices[0].text]) > 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 24

    chat = {"model": "gptapi", "messages": [{"role": "user", "content": "Tell a story."}],
            "max_tokens": 24, "temperature": 0, "seed": 7}  # fmt: skip
    plain_chat = oai.chat.completions.create(**chat).choices[0].message.content  # type: ignore[call-overload]
    streamed_chat = "".join(
        c.choices[0].delta.content or ""
        for c in oai.chat.completions.create(**chat, stream=True)  # type: ignore[call-overload]
    )
    assert streamed_chat == plain_chat


def test_curl_receives_the_first_chunk_before_generation_ends(live_server: LiveServer) -> None:
    body = '{"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": true}'
    started = time.monotonic()
    proc = subprocess.Popen(
        ["curl", "-sN", f"{live_server.base_url}/v1/completions",
         "-H", f"Authorization: Bearer {API_KEY}", "-H", "Content-Type: application/json",
         "-d", body],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    while first.startswith(b":") or first == b"\n":  # keepalive comments come first
        first = proc.stdout.readline()
    first_at = time.monotonic() - started
    rest = proc.stdout.read()
    done_at = time.monotonic() - started
    proc.wait(60)
    assert first.startswith(b"data: {")
    assert rest.rstrip().endswith(b"data: [DONE]")
    # 200 tokens take seconds; the first chunk came well before the last.
    assert first_at < done_at / 2


def test_a_stream_closed_after_2_chunks_frees_its_slot(live_server: LiveServer) -> None:
    with live_server.client() as c:
        with c.stream(
            "POST", "/v1/completions",
            json={"prompt": "Write a long story.", "max_tokens": 1000, "stream": True},
        ) as response:  # fmt: skip
            assert response.status_code == 200
            lines = response.iter_lines()
            got = 0
            for line in lines:
                if line.startswith("data: "):
                    got += 1
                    if got == 2:
                        break
        wait_for(live_server, busy=0, queued=0)


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/completions", {"best_of": 2}, "best_of"),
        ("/v1/completions", {"suffix": "x"}, "suffix"),
        ("/v1/completions", {"echo": True}, "echo"),
        ("/v1/completions", {"prompt": ["a", "b"]}, "prompt"),
        ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions"),
        ("/v1/chat/completions", {"function_call": {"name": "f"}}, "function_call"),
        ("/v1/chat/completions", {"response_format": {"type": "xml"}}, "response_format"),
    ],
)
def test_unsupported_parameters_get_a_400_naming_them(
    client: httpx.Client, path: str, extra: dict[str, object], param: str
) -> None:
    body: dict[str, object] = {"model": "gptapi", "max_tokens": 2}
    if path.endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": "Hi"}]
    else:
        body["prompt"] = "Hi"
    response = client.post(path, json={**body, **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter"
    assert param in error["message"]


def test_openai_client_raises_its_own_errors_for_our_refusals(live_server: LiveServer) -> None:
    bad = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key="wrong-key-0123456789")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    good = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key=API_KEY)
    with pytest.raises(openai.BadRequestError) as info:
        good.completions.create(model="x", prompt="Hi", max_tokens=0)
    assert "max_tokens" in str(info.value)


def test_a_temperature_below_the_floor_decodes_greedily_not_into_nan(
    oai: openai.OpenAI, client: httpx.Client
) -> None:
    """At 1e-40 the logits divided by the temperature overflowed into NaN and llama.cpp's
    sampler picked the last candidate: empty text on /v1, gibberish on the task routes."""
    prompt = "The capital of France is"
    texts = {
        t: oai.completions.create(model="m", prompt=prompt, max_tokens=8, temperature=t)
        .choices[0]
        .text
        for t in (0.0, 1e-40, 0.009)
    }
    assert texts[0.0].strip()
    assert texts[1e-40] == texts[0.0] == texts[0.009]
    task = [
        client.post(
            "/generate-text", json={"prompt": prompt, "max_tokens": 8, "temperature": t}
        ).json()["text"]
        for t in (0.0, 1e-40)
    ]
    assert task[0] == task[1] and task[0].strip()
