"""The OpenAI-compatible API: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``.

Same key, limits, logging, metrics and gateway path as the task endpoints; only the shapes differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from gptapi import prompts
from gptapi.api.deps import GatewayDep, KeyDep, SettingsDep
from gptapi.api.pipeline import Sampling, make_job, run
from gptapi.api.schemas import ErrorResponse
from gptapi.api.tasks import STREAMING
from gptapi.api.v1_schemas import (
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
from gptapi.config import Settings
from gptapi.errors import UnsupportedParameter
from gptapi.gateway import Completion, Gateway

router = APIRouter(prefix="/v1", tags=["openai"])
V1Response = CompletionResponse | ChatCompletionResponse | StreamingResponse
_STARTED = int(time.time())
# OpenAI's statuses: every invalid request is a 400, whatever the reason.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request: body, parameter or size"},
    401: {"model": ErrorResponse, "description": "Missing, malformed or unknown API key"},
    429: {"model": ErrorResponse, "description": "Rate, in-flight or token limit of this key"},
    500: {"model": ErrorResponse, "description": "Generation failed for this request"},
    503: {"model": ErrorResponse, "description": "Model loading, or all slots and queue full"},
    504: {"model": ErrorResponse, "description": "Request exceeded its time limit"},
}


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


@router.get("/models", response_model=ModelList, responses=ERROR_RESPONSES)
async def list_models(_key: KeyDep, gateway: GatewayDep) -> ModelList:
    return ModelList(data=[ModelCard(id=gateway.engine.info.id, created=_STARTED)])


@router.post(
    "/completions",
    response_model=CompletionResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="OpenAI-compatible text completion",
)
async def completions(
    body: CompletionRequest,
    request: Request,
    _key: KeyDep,
    gateway: GatewayDep,
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
    # The prompt is text, as any other user text: "<start_of_turn>" in it is not a turn.
    return await _run(
        request, gateway, settings, body, chat=False, texts={"prompt": prompts_[0]},
        prompt=lambda: prompts.text_prompt(prompts_[0], skip=False), max_tokens=body.max_tokens,
    )  # fmt: skip


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**STREAMING, **ERROR_RESPONSES},
    summary="OpenAI-compatible chat completion",
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    _key: KeyDep,
    gateway: GatewayDep,
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
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    return await _run(
        request, gateway, settings, body, chat=True,
        texts={"messages": "".join(m["content"] for m in messages)},
        prompt=lambda: prompts.chat_prompt(gateway.engine.info, messages),
        max_tokens=body.max_completion_tokens or body.max_tokens,
    )  # fmt: skip


async def _run(
    request: Request,
    gateway: Gateway,
    settings: Settings,
    body: V1Sampling,
    *,
    chat: bool,
    texts: dict[str, str | None],
    prompt: Callable[[], prompts.TaskPrompt],
    max_tokens: int | None,
) -> V1Response:
    # OpenAI's sampling: no top-k at all (0 = the whole vocabulary).
    sampling = Sampling(max_tokens, body.temperature, body.top_p, 0, body.seed)
    job = make_job(
        settings, task="chat" if chat else "completion", texts=texts, prompt=prompt,
        sampling=sampling, stop=body.stop_strings(), stream=body.stream,
        include_usage=body.stream_options is not None and body.stream_options.include_usage,
    )  # fmt: skip
    record_id = request.state.record.request_id
    shape = _Shape(chat, f"{'chatcmpl' if chat else 'cmpl'}-{record_id}", gateway.engine.info.id)
    response = await run(request, gateway, settings, job, shape)
    assert isinstance(response, CompletionResponse | ChatCompletionResponse | StreamingResponse)
    return response


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

    def opening(self) -> list[dict[str, Any]]:
        return [self.chunk("", None, first=True)] if self.chat else []

    def text(self, text: str) -> dict[str, Any]:
        return self.chunk(text, None)

    def closing(self, result: Completion, include_usage: bool) -> list[dict[str, Any]]:
        finish = "length" if result.finish_reason == "length" else "stop"
        chunks = [self.chunk(None if self.chat else "", finish)]
        if include_usage:
            usage = _usage(result).model_dump()
            chunks.append({**self.chunk(None, None), "choices": [], "usage": usage})
        return chunks

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
