"""The three task endpoints. Each builds its prompt, checks limits, and runs the engine."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gptapi import prompts
from gptapi.api.cancel import cancel_on_disconnect
from gptapi.api.deps import PoolDep, SettingsDep
from gptapi.config import Settings
from gptapi.limits import GenerationKey, check_text_length, sampling_params
from gptapi.pool import InferencePool
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

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, malformed or unknown API key"},
    429: {"model": ErrorResponse, "description": "This key's rate limit is exhausted"},
    413: {"model": ErrorResponse, "description": "Input too long for the limits or context"},
    422: {"model": ErrorResponse, "description": "Invalid request body"},
    500: {"model": ErrorResponse, "description": "Generation failed for this request"},
    503: {"model": ErrorResponse, "description": "Model loading, or all slots and queue full"},
    504: {"model": ErrorResponse, "description": "Request exceeded its time limit"},
}


async def _run(
    request: Request,
    pool: InferencePool,
    settings: Settings,
    body: SamplingFields,
    task_name: str,
    task: prompts.TaskPrompt,
    user_stop: tuple[str, ...] = (),
) -> TaskResponse:
    params = sampling_params(
        settings, body, user_stop + task.stop, skip_leading_whitespace=task.skip_leading_whitespace
    )
    record: RequestRecord = request.state.record
    record.task = task_name
    result = await cancel_on_disconnect(request, pool.complete(task.text, params, record=record))
    if settings.log_text:
        record.text = {"prompt": task.text, "output": result.text}
    return TaskResponse(
        id=record.request_id,
        model=pool.engine.info.id,
        text=result.text,
        finish_reason=result.finish_reason,
        usage=Usage(
            prompt_tokens=result.prompt_tokens,
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


@router.post("/generate-text", responses=ERROR_RESPONSES, summary="Continue a prompt")
async def generate_text(
    body: GenerateRequest,
    request: Request,
    _key: GenerationKey,
    pool: PoolDep,
    settings: SettingsDep,
) -> TaskResponse:
    check_text_length(settings, prompt=body.prompt)
    task = prompts.generate_prompt(pool.engine.info, body.prompt)
    return await _run(request, pool, settings, body, "generate", task, tuple(body.stop))


@router.post("/summarize-text", responses=ERROR_RESPONSES, summary="Summarize a text")
async def summarize_text(
    body: SummarizeRequest,
    request: Request,
    _key: GenerationKey,
    pool: PoolDep,
    settings: SettingsDep,
) -> TaskResponse:
    check_text_length(settings, text=body.text)
    task = prompts.summarize_prompt(pool.engine.info, body.text, body.max_words)
    return await _run(request, pool, settings, body, "summarize", task)


@router.post(
    "/answer-question",
    responses=ERROR_RESPONSES,
    summary="Answer a question, from the given context when there is one",
)
async def answer_question(
    body: AnswerRequest,
    request: Request,
    _key: GenerationKey,
    pool: PoolDep,
    settings: SettingsDep,
) -> TaskResponse:
    check_text_length(settings, question=body.question, context=body.context)
    task = prompts.answer_prompt(pool.engine.info, body.question, body.context)
    return await _run(request, pool, settings, body, "answer", task)
