"""OpenAI's response shapes for /v1: one body with its choices, or chunks as Server-Sent
Events (each choice's chunks tagged with its index); usage and logprobs as OpenAI counts and
writes them."""

from __future__ import annotations

import time
from typing import Any, Literal

from gptapi.api.v1_schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionResponse,
    ChatLogprobs,
    ChatTokenLogprob,
    CompletionChoice,
    CompletionLogprobs,
    CompletionResponse,
    PromptTokensDetails,
    TopLogprob,
    V1Usage,
)
from gptapi.engine import TokenLogprob
from gptapi.gateway import Completion


class V1Shape:
    """OpenAI's field names for one response, plain or streamed."""

    def __init__(self, chat: bool, id_: str, model: str) -> None:
        self.chat, self.id, self.model = chat, id_, model
        self.created = int(time.time())

    def final(self, results: list[Completion]) -> ChatCompletionResponse | CompletionResponse:
        usage = _usage(results)
        if self.chat:
            return ChatCompletionResponse(
                id=self.id, created=self.created, model=self.model, usage=usage,
                choices=[ChatChoice(index=i, message=AssistantMessage(content=r.text),
                                    finish_reason=_finish(r),
                                    logprobs=self._chat_logprobs(r.logprobs))
                         for i, r in enumerate(results)],
            )  # fmt: skip
        return CompletionResponse(
            id=self.id, created=self.created, model=self.model, usage=usage,
            choices=[CompletionChoice(index=i, text=r.text, finish_reason=_finish(r),
                                      logprobs=self._completion_logprobs(r.logprobs))
                     for i, r in enumerate(results)],
        )  # fmt: skip

    def opening(self, n: int) -> list[dict[str, Any]]:
        return [self.chunk("", None, i, first=True) for i in range(n)] if self.chat else []

    def text(self, text: str, index: int, logprobs: tuple[TokenLogprob, ...]) -> dict[str, Any]:
        chunk = self.chunk(text, None, index)
        if logprobs:
            shaped = (
                self._chat_logprobs(logprobs) if self.chat else self._completion_logprobs(logprobs)
            )
            chunk["choices"][0]["logprobs"] = None if shaped is None else shaped.model_dump()
        return chunk

    def _chat_logprobs(self, entries: tuple[TokenLogprob, ...]) -> ChatLogprobs | None:
        if not entries:
            return None
        return ChatLogprobs(
            content=[
                ChatTokenLogprob(
                    **_top(e.token, e.logprob).model_dump(),
                    top_logprobs=[_top(t, lp) for t, lp in e.top],
                )
                for e in entries
            ]
        )

    def _completion_logprobs(self, entries: tuple[TokenLogprob, ...]) -> CompletionLogprobs | None:
        if not entries:
            return None
        tokens = [_text(e.token) for e in entries]
        offsets, at = [], 0
        for token in tokens:
            offsets.append(at)
            at += len(token)
        return CompletionLogprobs(
            tokens=tokens,
            token_logprobs=[e.logprob for e in entries],
            top_logprobs=[{_text(t): lp for t, lp in e.top} for e in entries],
            text_offset=offsets,
        )

    def closing(self, results: list[Completion], include_usage: bool) -> list[dict[str, Any]]:
        chunks = [
            self.chunk(None if self.chat else "", _finish(r), i) for i, r in enumerate(results)
        ]
        if include_usage:
            usage = _usage(results).model_dump()
            chunks.append({**self.chunk(None, None, 0), "choices": [], "usage": usage})
        return chunks

    def chunk(
        self, text: str | None, finish: str | None, index: int, *, first: bool = False
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "finish_reason": finish, "logprobs": None}
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


def _text(token: bytes) -> str:
    # A piece may be part of a UTF-8 character: its bytes are in "bytes", as OpenAI does.
    return token.decode("utf-8", errors="replace")


def _top(token: bytes, logprob: float) -> TopLogprob:
    return TopLogprob(token=_text(token), logprob=logprob, bytes=list(token))


def _finish(result: Completion) -> Literal["stop", "length"]:
    return "length" if result.finish_reason == "length" else "stop"


def _usage(results: list[Completion]) -> V1Usage:
    """As OpenAI counts it for n choices: the prompt once, every choice's completion."""
    result = results[0]
    completion = sum(r.completion_tokens for r in results)
    return V1Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=completion,
        total_tokens=result.prompt_tokens + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=result.cached_tokens),
    )
