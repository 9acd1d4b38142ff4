"""The OpenAI-compatible API: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``.

Same key, limits, logging, metrics and pool path as the task endpoints; only the shapes differ.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from gptapi import prompts
from gptapi.api.cancel import cancel_on_disconnect
from gptapi.api.deps import PoolDep, SettingsDep
from gptapi.api.sse import error_event, first_event, keepalive, sse_event
from gptapi.api.tasks import ERROR_RESPONSES, STREAMING
from gptapi.auth import ApiKeyId
from gptapi.config import Settings
from gptapi.engine import Delta, SamplingParams
from gptapi.errors import GptapiError, UnsupportedParameter
from gptapi.limits import GenerationKey, check_stop_strings, check_text_length, sampling_params
from gptapi.pool import Completion, InferencePool, Waiting
from gptapi.requestlog import RequestRecord
from gptapi.schemas import SamplingFields
from gptapi.schemas_openai import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    V1Sampling,
    V1Usage,
)

router = APIRouter(prefix="/v1", tags=["openai"])
V1Response = CompletionResponse | ChatCompletionResponse | StreamingResponse
_STARTED = int(time.time())


def _refuse_unsupported(body: V1Sampling, extra: dict[str, Any]) -> None:
    checks: dict[str, bool] = {
        "n": body.n != 1,
        "logprobs": body.logprobs not in (None, False),
        "top_logprobs": body.top_logprobs is not None,
        "logit_bias": bool(body.logit_bias),
        "presence_penalty": bool(body.presence_penalty),
        "frequency_penalty": bool(body.frequency_penalty),
        **extra,
    }
    for name, unsupported in checks.items():
        if unsupported:
            raise UnsupportedParameter(f"'{name}' is not supported by this server", param=name)


def _params(
    settings: Settings, body: V1Sampling, max_tokens: int | None, stop: tuple[str, ...]
) -> SamplingParams:
    fields = SamplingFields(
        max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed
    )
    return sampling_params(settings, fields, stop)


@router.get("/models", response_model=ModelList, responses=ERROR_RESPONSES)
async def list_models(_key: ApiKeyId, pool: PoolDep) -> ModelList:
    return ModelList(data=[ModelCard(id=pool.engine.info.id, created=_STARTED)])


@router.post(
    "/completions",
    response_model=CompletionResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="OpenAI-compatible text completion",
)
async def completions(
    body: CompletionRequest,
    request: Request,
    _key: GenerationKey,
    pool: PoolDep,
    settings: SettingsDep,
) -> V1Response:
    prompts_ = body.prompt if isinstance(body.prompt, list) else [body.prompt]
    _refuse_unsupported(
        body,
        {
            "prompt": len(prompts_) != 1,
            "echo": body.echo,
            "suffix": body.suffix is not None,
            "best_of": body.best_of not in (None, 1),
        },
    )
    check_text_length(settings, prompt=prompts_[0])
    check_stop_strings(settings, body.stop_strings())
    task = prompts.TaskPrompt(prompts_[0], (), skip_leading_whitespace=False)
    params = _params(settings, body, body.max_tokens, tuple(body.stop_strings()))
    return await _run(request, pool, settings, body, task, params, chat=False)


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="OpenAI-compatible chat completion",
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    _key: GenerationKey,
    pool: PoolDep,
    settings: SettingsDep,
) -> V1Response:
    _refuse_unsupported(
        body,
        {
            "tools": bool(body.tools),
            "tool_choice": body.tool_choice not in (None, "none"),
            "functions": bool(body.functions),
            "function_call": body.function_call is not None,
            "parallel_tool_calls": body.parallel_tool_calls is not None,
            "response_format": body.response_format not in (None, {"type": "text"}),
        },
    )
    messages = [{"role": m.role, "content": _text_of(m.content)} for m in body.messages]
    check_text_length(settings, messages="".join(m["content"] for m in messages))
    check_stop_strings(settings, body.stop_strings())
    task = prompts.chat_prompt(pool.engine.info, messages)
    max_tokens = body.max_completion_tokens or body.max_tokens
    params = _params(settings, body, max_tokens, tuple(body.stop_strings()) + task.stop)
    return await _run(request, pool, settings, body, task, params, chat=True)


def _text_of(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise UnsupportedParameter(
                "only text content parts are supported", param="messages.content"
            )
        parts.append(part["text"])
    return "".join(parts)


async def _run(
    request: Request,
    pool: InferencePool,
    settings: Settings,
    body: V1Sampling,
    task: prompts.TaskPrompt,
    params: SamplingParams,
    *,
    chat: bool,
) -> V1Response:
    record: RequestRecord = request.state.record
    record.task = "chat" if chat else "completion"
    shape = _Shape(chat, f"{'chatcmpl' if chat else 'cmpl'}-{record.request_id}",
                   pool.engine.info.id)  # fmt: skip
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        events = pool.stream(task.text, params, record=record)
        first = await cancel_on_disconnect(request, first_event(events))
        return StreamingResponse(
            _sse(first, events, record, shape, include_usage, settings.log_text),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await cancel_on_disconnect(request, pool.complete(task.text, params, record=record))
    if settings.log_text:
        record.text = {"prompt": task.text, "output": result.text}
    return shape.final(result)


class _Shape:
    """OpenAI's field names for one response, plain or streamed."""

    def __init__(self, chat: bool, id_: str, model: str) -> None:
        self.chat, self.id, self.model = chat, id_, model
        self.created = int(time.time())

    def final(self, result: Completion) -> ChatCompletionResponse | CompletionResponse:
        usage = _usage(result)
        finish = "length" if result.finish_reason == "length" else "stop"
        if self.chat:
            return ChatCompletionResponse(
                id=self.id, created=self.created, model=self.model, usage=usage,
                choices=[ChatChoice(message=AssistantMessage(content=result.text),
                                    finish_reason=finish)],
            )  # fmt: skip
        return CompletionResponse(
            id=self.id, created=self.created, model=self.model, usage=usage,
            choices=[CompletionChoice(text=result.text, finish_reason=finish)],
        )  # fmt: skip

    def chunk(self, text: str | None, finish: str | None, *, first: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        return {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }


def _usage(result: Completion) -> V1Usage:
    return V1Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=result.cached_tokens),
    )


async def _sse(
    first: Delta | Waiting | Completion,
    events: AsyncGenerator[Delta | Waiting | Completion, None],
    record: RequestRecord,
    shape: _Shape,
    include_usage: bool,
    log_text: bool,
) -> AsyncIterator[bytes]:
    # Cancelled by Starlette when the client leaves; closing `events` frees the slot.
    try:
        if shape.chat:
            yield sse_event(shape.chunk("", None, first=True))
        event = first
        while not isinstance(event, Completion):
            if isinstance(event, Waiting):
                yield keepalive(event)
            elif event.text:
                yield sse_event(shape.chunk(event.text, None))
            event = await anext(events)
        if log_text:
            record.text = {"output": event.text}
        finish = "length" if event.finish_reason == "length" else "stop"
        yield sse_event(shape.chunk(None if shape.chat else "", finish))
        if include_usage:
            usage = {**shape.chunk(None, None), "choices": [], "usage": _usage(event).model_dump()}
            yield sse_event(usage)
        yield b"data: [DONE]\n\n"
    except GptapiError as exc:
        yield error_event(record, exc)
    finally:
        await events.aclose()
