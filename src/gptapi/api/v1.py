"""The OpenAI-compatible API: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``.

Same key, limits, logging, metrics and gateway path as the task endpoints; only the shapes differ.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from gptapi import prompts
from gptapi.api.deps import GatewayDep, KeyDep, SettingsDep
from gptapi.api.pipeline import Sampling, make_job, run
from gptapi.api.schemas import ErrorResponse
from gptapi.api.structured import check_grammar, response_format_grammar
from gptapi.api.tasks import STREAMING
from gptapi.api.tools import ToolUse, tool_use
from gptapi.api.v1_schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    V1Sampling,
)
from gptapi.api.v1_shape import V1Shape
from gptapi.api.v1_unknown import ignore_unknown_fields
from gptapi.config import Settings
from gptapi.errors import InvalidRequest, UnsupportedParameter
from gptapi.gateway import Gateway

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


def _refuse_unsupported(checks: dict[str, bool]) -> None:
    """400 naming a declared field that asks for what this server does not do. A field that is
    a no-op as sent (``echo: false``, ``best_of: 1``) is accepted, as OpenAI's peers accept it."""
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
        logprobs=body.logprobs,
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
    if body.top_logprobs and not body.logprobs:
        raise UnsupportedParameter("top_logprobs needs logprobs: true", param="top_logprobs")
    tools = tool_use(body)
    if tools is not None and body.response_format not in (None, {"type": "text"}):
        raise UnsupportedParameter(
            "response_format with tools is not supported: the reply is text or calls",
            param="response_format",
        )
    messages = [m.model_dump(include=_MESSAGE_FIELDS, exclude_none=True) for m in body.messages]
    for m, message in zip(messages, body.messages, strict=True):
        m["content"] = message.text()
    return await _run(
        request, gateway, settings, body, chat=True,
        texts=_chat_texts(body, messages),
        prompt=lambda: prompts.chat_prompt(
            gateway.engine.info, messages, tools.definitions() if tools else None,
            must_call=tools.must_call if tools else False,
        ),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        logprobs=body.top_logprobs if body.logprobs else None,
        tools=tools,
    )  # fmt: skip


# What a message gives its prompt (the SDK's extra keys, like a message's id, do not).
_MESSAGE_FIELDS = {"role", "content", "name", "tool_calls", "tool_call_id"}


def _chat_texts(
    body: ChatCompletionRequest, messages: list[dict[str, Any]]
) -> dict[str, str | None]:
    """What goes into the prompt, for its size bound: contents, tool definitions and calls."""
    texts: dict[str, str | None] = {"messages": "".join(m["content"] for m in messages)}
    if body.tools:
        texts["tools"] = json.dumps([t.model_dump(exclude_none=True) for t in body.tools])
    calls = [m["tool_calls"] for m in messages if m.get("tool_calls")]
    if calls:
        texts["tool_calls"] = json.dumps(calls)
    return texts


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
    logprobs: int | None,
    tools: ToolUse | None = None,
) -> V1Response:
    ignore_unknown_fields(request, settings, body.unknown_fields())
    grammar: str | None
    trigger: str | None = None
    if tools is not None:
        grammar, trigger = tools.grammar()
    else:
        grammar = response_format_grammar(body.response_format)
    await check_grammar(gateway.engine, grammar, "response_format" if tools is None else "tools")
    if body.logit_bias:
        try:  # ids outside the vocabulary are the client's mistake, named
            await asyncio.to_thread(gateway.engine.pieces, list(body.logit_bias))
        except ValueError as exc:
            raise InvalidRequest(f"logit_bias: {exc}") from None
    sampling = Sampling(
        max_tokens,
        body.temperature,
        body.top_p,
        0,  # OpenAI's sampling: no top-k at all (0 = the whole vocabulary)
        body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        logit_bias=tuple(sorted(body.logit_bias.items())),
        grammar=grammar,
        grammar_trigger=trigger,
        logprobs=logprobs,
    )
    job = make_job(
        settings, task="chat" if chat else "completion", texts=texts, prompt=prompt,
        sampling=sampling, stop=body.stop_strings(), stream=body.stream,
        include_usage=body.stream_options is not None and body.stream_options.include_usage,
        n=body.n,
    )  # fmt: skip
    record_id = request.state.record.request_id
    shape = V1Shape(
        chat,
        f"{'chatcmpl' if chat else 'cmpl'}-{record_id}",
        gateway.engine.info.id,
        tools=tools is not None,
        forced=tools is not None and tools.named,
    )
    response = await run(request, gateway, settings, job, shape)
    assert isinstance(response, CompletionResponse | ChatCompletionResponse | StreamingResponse)
    return response
