"""The task endpoints against the live server on the real embedded model."""

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gptapi.prompts import answer_prompt, summarize_prompt
from tests.conftest import API_KEY, LiveServer

PASSAGE = (
    "The city council met on Tuesday and voted to extend library hours on weekends, citing "
    "rising demand from students preparing for exams. The change takes effect next month and "
    "will cost about 40,000 dollars a year."
)


def assert_task_response(r: httpx.Response, max_tokens: int) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["text"].strip()
    assert body["id"] == r.headers["x-request-id"]
    assert body["model"] == "Gemma 3 270m"
    usage = body["usage"]
    assert 1 <= usage["completion_tokens"] <= max_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    timings = body["timings"]
    assert timings["total_ms"] >= timings["time_to_first_token_ms"] > 0
    assert timings["queue_ms"] >= 0
    assert body["finish_reason"] in ("stop", "length")
    return body


def test_generate_text_counts_tokens_exactly(
    client: httpx.Client, tokenizer: Callable[[str], list[int]]
) -> None:
    prompt = "Once upon a time, in a small village by the sea,"
    r = client.post("/generate-text", json={"prompt": prompt, "max_tokens": 12})
    body = assert_task_response(r, 12)
    assert body["usage"]["prompt_tokens"] == len(tokenizer(prompt))
    assert body["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 12
    assert body["timings"]["tokens_per_s"] > 0


def test_generate_text_honours_stop_strings(client: httpx.Client) -> None:
    r = client.post(
        "/generate-text",
        json={"prompt": "Count: one, two, three, four, five,", "max_tokens": 30, "stop": ["eight"]},
    )
    body = assert_task_response(r, 30)
    assert "eight" not in body["text"]
    assert body["finish_reason"] == "stop"


def test_same_seed_same_text(client: httpx.Client) -> None:
    request = {"prompt": "My favourite colour is", "max_tokens": 10, "temperature": 1.0, "seed": 7}
    first = client.post("/generate-text", json=request).json()["text"]
    second = client.post("/generate-text", json=request).json()["text"]
    assert first == second


def test_answer_question_reads_the_answer_from_the_context(
    client: httpx.Client, tokenizer: Callable[[str], list[int]]
) -> None:
    question = "What is the secret code?"
    context = "The secret code is 4417. It opens the blue door in the basement."
    r = client.post("/answer-question", json={"question": question, "context": context})
    body = assert_task_response(r, 128)
    assert body["text"].startswith("4417")
    info = _base_model_info()
    expected_prompt = answer_prompt(info, question, context).text
    assert body["usage"]["prompt_tokens"] == len(tokenizer(expected_prompt))


def test_answer_question_without_context(client: httpx.Client) -> None:
    r = client.post("/answer-question", json={"question": "What is the capital of France?"})
    body = assert_task_response(r, 128)
    assert "Paris" in body["text"]


def test_summarize_text(client: httpx.Client, tokenizer: Callable[[str], list[int]]) -> None:
    r = client.post("/summarize-text", json={"text": PASSAGE, "max_tokens": 60})
    body = assert_task_response(r, 60)
    assert "librar" in body["text"].lower()
    expected_prompt = summarize_prompt(_base_model_info(), PASSAGE, None).text
    assert body["usage"]["prompt_tokens"] == len(tokenizer(expected_prompt))


def test_summarize_text_with_a_word_limit(client: httpx.Client) -> None:
    r = client.post("/summarize-text", json={"text": PASSAGE, "max_words": 20, "max_tokens": 60})
    body = assert_task_response(r, 60)
    assert "librar" in body["text"].lower()


def _base_model_info():  # type: ignore[no-untyped-def]
    from tests.helpers import BASE

    return BASE


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/generate-text", {"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ("/generate-text", {"prompt": "x", "temperature": 2.5}, "temperature"),
        ("/generate-text", {"prompt": "x", "top_p": 0}, "top_p"),
        ("/generate-text", {"prompt": ""}, "prompt"),
        ("/generate-text", {"prompt": 5}, "prompt"),
        ("/generate-text", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ("/generate-text", {"prompt": "x", "unknown": 1}, "unknown"),
        ("/generate-text", {}, "prompt"),
        ("/summarize-text", {"text": "x", "max_words": 0}, "max_words"),
        ("/summarize-text", {"text": "x", "max_words": 1001}, "max_words"),
        ("/answer-question", {"context": "no question"}, "question"),
        ("/answer-question", {"question": "q", "seed": -1}, "seed"),
    ],
)
def test_bad_fields_get_422_in_the_error_shape(
    client: httpx.Client, path: str, body: dict[str, Any], field: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "validation_error"
    assert field in error["message"]
    assert error["request_id"] == r.headers["x-request-id"]


def test_max_tokens_above_server_limit_is_422(client: httpx.Client) -> None:
    r = client.post("/generate-text", json={"prompt": "x", "max_tokens": 100_000})
    assert r.status_code == 422
    assert "limit" in r.json()["error"]["message"]


def test_prompt_that_cannot_fit_the_context_is_413_naming_both_numbers(
    client: httpx.Client,
) -> None:
    prompt = "word " * 4000
    r = client.post("/generate-text", json={"prompt": prompt, "max_tokens": 512})
    assert r.status_code == 413, r.text
    message = r.json()["error"]["message"]
    assert "max_tokens (512)" in message
    assert "4096" in message


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"X-API-Key": "wrong-key-0123456789"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {API_KEY} extra"},
    ],
    ids=["missing", "wrong-bearer", "wrong-x-api-key", "basic-scheme", "empty-bearer", "two-words"],
)
def test_requests_without_a_valid_key_get_401(
    live_server: LiveServer, headers: dict[str, str]
) -> None:
    with live_server.client(key=None) as c:
        r = c.post("/generate-text", json={"prompt": "hi", "max_tokens": 1}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    error = r.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"


def test_x_api_key_header_is_accepted(live_server: LiveServer) -> None:
    with live_server.client(key=None) as c:
        r = c.post(
            "/generate-text",
            json={"prompt": "Hello", "max_tokens": 2},
            headers={"X-API-Key": API_KEY},
        )
    assert r.status_code == 200


def test_openapi_documents_the_endpoints_with_examples(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/generate-text", "/summarize-text", "/answer-question", "/health", "/ready"):
        assert path in spec["paths"]
    schemas = spec["components"]["schemas"]
    for name in ("GenerateRequest", "SummarizeRequest", "AnswerRequest"):
        assert schemas[name]["examples"]


def test_streamed_text_arrives_in_chunks_and_equals_the_plain_response(
    live_server: LiveServer, client: httpx.Client
) -> None:
    body = {"prompt": "Once upon a time, in a small village by the sea,", "max_tokens": 16}
    plain = client.post("/generate-text", json=body).json()
    chunks: list[str] = []
    final: dict[str, Any] = {}
    with client.stream("POST", "/generate-text", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        event = json.loads(line[6:])
        if event.get("usage"):
            final = event
        else:
            chunks.append(event["text"])
    assert len(chunks) > 1
    assert "".join(chunks) == plain["text"]
    assert final["finish_reason"] == "length"
    assert final["usage"]["completion_tokens"] == 16
    assert final["id"] == r.headers["x-request-id"]


def test_streaming_refusal_is_a_plain_http_error(client: httpx.Client) -> None:
    r = client.post("/generate-text", json={"prompt": "word " * 4000, "stream": True})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "context_length_exceeded"
