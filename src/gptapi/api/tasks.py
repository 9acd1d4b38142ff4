"""The three task endpoints. Each builds its prompt, checks limits, and runs the engine."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from gptapi import prompts
from gptapi.api.cancel import cancel_on_disconnect
from gptapi.api.deps import PoolDep, SettingsDep
from gptapi.api.sse import error_event, first_event, keepalive, sse_event
from gptapi.config import Settings
from gptapi.engine import Delta
from gptapi.errors import GptapiError
from gptapi.limits import GenerationKey, check_stop_strings, check_text_length, sampling_params
from gptapi.pool import Completion, InferencePool, Waiting
from gptapi.requestlog import RequestRecord
from gptapi.schemas import (
    AnswerRequest,
    ErrorResponse,
    GenerateRequest,
    SamplingFields,
    SummarizeRequest,
    TaskResponse,
    Timings,
    Usage,
)

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


def _response(record: RequestRecord, model: str, result: Completion) -> TaskResponse:
    return TaskResponse(
        id=record.request_id,
        model=model,
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


async def _run(
    request: Request,
    pool: InferencePool,
    settings: Settings,
    body: SamplingFields,
    task_name: str,
    task: prompts.TaskPrompt,
    user_stop: tuple[str, ...] = (),
) -> TaskResponse | StreamingResponse:
    params = sampling_params(
        settings, body, user_stop + task.stop, skip_leading_whitespace=task.skip_leading_whitespace
    )
    record: RequestRecord = request.state.record
    record.task = task_name
    model = pool.engine.info.id
    if body.stream:
        events = pool.stream(task.text, params, record=record)
        first = await cancel_on_disconnect(request, first_event(events))
        return StreamingResponse(
            _sse(first, events, record, model, settings.log_text),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await cancel_on_disconnect(request, pool.complete(task.text, params, record=record))
    if settings.log_text:
        record.text = {"prompt": task.text, "output": result.text}
    return _response(record, model, result)


async def _sse(
    first: Delta | Waiting | Completion,
    events: AsyncGenerator[Delta | Waiting | Completion, None],
    record: RequestRecord,
    model: str,
    log_text: bool,
) -> AsyncIterator[bytes]:
    # Starlette cancels this generator when the client goes away; closing `events` then
    # cancels the sequence, which frees its slot at the next decode step.
    try:
        event_ = first
        while True:
            if isinstance(event_, Completion):
                if log_text:
                    record.text = {"output": event_.text}
                final = _response(record, model, event_).model_dump()
                yield sse_event({**final, "text": ""})
                break
            if isinstance(event_, Waiting):
                yield keepalive(event_)
            elif event_.text:
                yield sse_event({"id": record.request_id, "text": event_.text})
            event_ = await anext(events)
        yield b"data: [DONE]\n\n"
    except GptapiError as exc:
        yield error_event(record, exc)
    finally:
        await events.aclose()


@router.post(
    "/generate-text",
    response_model=TaskResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="Continue a prompt",
)
async def generate_text(
    body: GenerateRequest,
    request: Request,
    _key: GenerationKey,
    pool: PoolDep,
    settings: SettingsDep,
) -> TaskResponse | StreamingResponse:
    check_text_length(settings, prompt=body.prompt)
    check_stop_strings(settings, body.stop)
    task = prompts.generate_prompt(pool.engine.info, body.prompt)
    return await _run(request, pool, settings, body, "generate", task, tuple(body.stop))


@router.post(
    "/summarize-text",
    response_model=TaskResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="Summarize a text",
)
async def summarize_text(
    body: SummarizeRequest,
    request: Request,
    _key: GenerationKey,
    pool: PoolDep,
    settings: SettingsDep,
) -> TaskResponse | StreamingResponse:
    check_text_length(settings, text=body.text)
    task = prompts.summarize_prompt(pool.engine.info, body.text, body.max_words)
    return await _run(request, pool, settings, body, "summarize", task)


@router.post(
    "/answer-question",
    response_model=TaskResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="Answer a question, from the given context when there is one",
)
async def answer_question(
    body: AnswerRequest,
    request: Request,
    _key: GenerationKey,
    pool: PoolDep,
    settings: SettingsDep,
) -> TaskResponse | StreamingResponse:
    check_text_length(settings, question=body.question, context=body.context)
    task = prompts.answer_prompt(pool.engine.info, body.question, body.context)
    return await _run(request, pool, settings, body, "answer", task)
