"""The three task endpoints: each turns its body into a job for the one runner
(``api.pipeline``) and shapes the answer as a ``TaskResponse``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from gptapi import prompts
from gptapi.api.deps import GatewayDep, KeyDep, SettingsDep
from gptapi.api.pipeline import Sampling, make_job, run
from gptapi.api.schemas import (
    AnswerRequest,
    ErrorResponse,
    GenerateRequest,
    SamplingFields,
    SummarizeRequest,
    TaskResponse,
    Timings,
    Usage,
)
from gptapi.api.structured import check_grammar, schema_grammar
from gptapi.config import Settings
from gptapi.engine import TokenLogprob
from gptapi.gateway import Completion, Gateway

router = APIRouter(tags=["tasks"])

# With "stream": true the 200 is an event stream instead of the JSON body.
STREAMING: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'The result as JSON, or Server-Sent Events with "stream": true',
        "content": {
            "text/event-stream": {
                # One event: its `data` is a JSON chunk, or `[DONE]` at the end.
                "schema": {
                    "type": "object",
                    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                    "required": ["data"],
                }
            }
        },
    }
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body is not valid JSON"},
    401: {"model": ErrorResponse, "description": "Missing, malformed or unknown API key"},
    408: {"model": ErrorResponse, "description": "Body not received within the time limit"},
    429: {"model": ErrorResponse, "description": "This key's rate limit is exhausted"},
    413: {"model": ErrorResponse, "description": "Body, input or prompt too large"},
    415: {"model": ErrorResponse, "description": "Body is not sent as application/json"},
    422: {"model": ErrorResponse, "description": "Body does not match the schema or limits"},
    500: {"model": ErrorResponse, "description": "Generation failed for this request"},
    503: {"model": ErrorResponse, "description": "Model loading, or all slots and queue full"},
    504: {"model": ErrorResponse, "description": "Request exceeded its time limit"},
}


class TaskShape:
    """The task endpoints' response: one JSON body, or text events then that body."""

    def __init__(self, request_id: str, model: str) -> None:
        self.request_id, self.model = request_id, model

    def final(self, results: list[Completion]) -> TaskResponse:
        result = results[0]  # the task endpoints have one choice
        return TaskResponse(
            id=self.request_id,
            model=self.model,
            text=result.text,
            finish_reason=result.finish_reason,
            usage=Usage(
                prompt_tokens=result.prompt_tokens,
                cached_tokens=result.cached_tokens,
                completion_tokens=result.completion_tokens,
                total_tokens=result.prompt_tokens + result.completion_tokens,
            ),
            timings=Timings(
                queue_ms=result.queue_s * 1000,
                time_to_first_token_ms=None if result.ttft_s is None else result.ttft_s * 1000,
                total_ms=result.total_s * 1000,
                tokens_per_s=result.tokens_per_s,
            ),
        )

    def opening(self, n: int) -> list[dict[str, Any]]:
        return []

    def text(
        self, text: str, index: int, logprobs: tuple[TokenLogprob, ...]
    ) -> list[dict[str, Any]]:
        return [{"id": self.request_id, "text": text}]

    def closing(self, results: list[Completion], include_usage: bool) -> list[dict[str, Any]]:
        # The text was streamed already: the final event carries everything else.
        return [{**self.final(results).model_dump(), "text": ""}]


async def _run(
    request: Request,
    gateway: Gateway,
    settings: Settings,
    body: SamplingFields,
    *,
    task: str,
    texts: dict[str, str | None],
    prompt: Callable[[], prompts.TaskPrompt],
    stop: list[str] | None = None,
) -> TaskResponse | StreamingResponse:
    grammar = None if body.json_schema is None else schema_grammar(body.json_schema, "json_schema")
    await check_grammar(gateway.engine, grammar, "json_schema")
    job = make_job(
        settings,
        task=task,
        texts=texts,
        prompt=prompt,
        sampling=Sampling(
            body.max_tokens,
            body.temperature,
            body.top_p,
            body.top_k,
            body.seed,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty,
            grammar=grammar,
        ),
        stop=stop or [],
        stream=body.stream,
    )
    shape = TaskShape(request.state.record.request_id, gateway.engine.info.id)
    response = await run(request, gateway, settings, job, shape)
    assert isinstance(response, TaskResponse | StreamingResponse)
    return response


@router.post(
    "/generate-text",
    response_model=TaskResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="Continue a prompt",
)
async def generate_text(
    body: GenerateRequest,
    request: Request,
    _key: KeyDep,
    gateway: GatewayDep,
    settings: SettingsDep,
) -> TaskResponse | StreamingResponse:
    return await _run(
        request, gateway, settings, body, task="generate", texts={"prompt": body.prompt},
        prompt=lambda: prompts.generate_prompt(gateway.engine.info, body.prompt), stop=body.stop,
    )  # fmt: skip


@router.post(
    "/summarize-text",
    response_model=TaskResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="Summarize a text",
)
async def summarize_text(
    body: SummarizeRequest,
    request: Request,
    _key: KeyDep,
    gateway: GatewayDep,
    settings: SettingsDep,
) -> TaskResponse | StreamingResponse:
    return await _run(
        request, gateway, settings, body, task="summarize", texts={"text": body.text},
        prompt=lambda: prompts.summarize_prompt(gateway.engine.info, body.text, body.max_words),
    )  # fmt: skip


@router.post(
    "/answer-question",
    response_model=TaskResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="Answer a question, from the given context when there is one",
)
async def answer_question(
    body: AnswerRequest,
    request: Request,
    _key: KeyDep,
    gateway: GatewayDep,
    settings: SettingsDep,
) -> TaskResponse | StreamingResponse:
    return await _run(
        request, gateway, settings, body, task="answer",
        texts={"question": body.question, "context": body.context},
        prompt=lambda: prompts.answer_prompt(gateway.engine.info, body.question, body.context),
    )  # fmt: skip
