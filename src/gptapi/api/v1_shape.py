"""OpenAI's response shapes for /v1: one body with its choices, or chunks as Server-Sent
Events (each choice's chunks tagged with its index); usage and logprobs as OpenAI counts and
writes them; with tools, each choice's text read into content and ``tool_calls``
(``api.tool_calls``), streamed as OpenAI's deltas: a call's id and name first, then its
arguments in fragments."""

from __future__ import annotations

import time
from typing import Any, Literal

from gptapi.api.tool_calls import Arguments, CallStart, Content, Event, ToolCallReader
from gptapi.api.v1_schemas import (
    AssistantMessage,
    CalledFunction,
    CalledTool,
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

    def __init__(
        self, chat: bool, id_: str, model: str, *, tools: bool = False, forced: bool = False
    ) -> None:
        self.chat, self.id, self.model, self.tools = chat, id_, model, tools
        # A named tool_choice: OpenAI finishes with "stop", not "tool_calls", as it asked for it.
        self.forced = forced
        self.created = int(time.time())
        self._readers: dict[int, ToolCallReader] = {}  # with tools: each streamed choice's
        self._held: dict[int, tuple[TokenLogprob, ...]] = {}  # logprobs of text not yet sent

    def final(self, results: list[Completion]) -> ChatCompletionResponse | CompletionResponse:
        usage = _usage(results)
        if self.chat:
            return ChatCompletionResponse(
                id=self.id, created=self.created, model=self.model, usage=usage,
                choices=[self._chat_choice(i, r) for i, r in enumerate(results)],
            )  # fmt: skip
        return CompletionResponse(
            id=self.id, created=self.created, model=self.model, usage=usage,
            choices=[CompletionChoice(index=i, text=r.text, finish_reason=_finish(r),
                                      logprobs=self._completion_logprobs(r.logprobs))
                     for i, r in enumerate(results)],
        )  # fmt: skip

    def _chat_choice(self, index: int, result: Completion) -> ChatChoice:
        logprobs = self._chat_logprobs(result.logprobs)
        if not self.tools:
            message = AssistantMessage(content=result.text)
            return ChatChoice(
                index=index, message=message, finish_reason=_finish(result), logprobs=logprobs
            )
        reader = ToolCallReader()
        reader.feed(result.text)
        reader.close()
        calls = [
            CalledTool(id=c.id, function=CalledFunction(name=c.name, arguments=c.arguments))
            for c in reader.calls
        ]
        message = AssistantMessage(
            content=reader.content if reader.content or not calls else None,
            tool_calls=calls or None,
        )
        return ChatChoice(
            index=index, message=message, logprobs=logprobs,
            finish_reason=_finish(result, called=bool(calls) and not self.forced),
        )  # fmt: skip

    def opening(self, n: int) -> list[dict[str, Any]]:
        return [self.chunk("", None, i, first=True) for i in range(n)] if self.chat else []

    def text(
        self, text: str, index: int, logprobs: tuple[TokenLogprob, ...]
    ) -> list[dict[str, Any]]:
        if not self.tools:
            return [self._with_logprobs(self.chunk(text, None, index), logprobs)]
        events = self._readers.setdefault(index, ToolCallReader()).feed(text)
        held = self._held.pop(index, ()) + logprobs
        if not events:
            if held:
                self._held[index] = held  # sent with the next chunk of this choice
            return []
        chunks = [self._event_chunk(event, index) for event in events]
        chunks[0] = self._with_logprobs(chunks[0], held)
        return chunks

    def _with_logprobs(
        self, chunk: dict[str, Any], logprobs: tuple[TokenLogprob, ...]
    ) -> dict[str, Any]:
        if logprobs:
            shaped = (
                self._chat_logprobs(logprobs) if self.chat else self._completion_logprobs(logprobs)
            )
            chunk["choices"][0]["logprobs"] = None if shaped is None else shaped.model_dump()
        return chunk

    def _event_chunk(self, event: Event, index: int) -> dict[str, Any]:
        if isinstance(event, Content):
            return self.chunk(event.text, None, index)
        call: dict[str, Any] = {"index": event.index}
        if isinstance(event, CallStart):
            call |= {"id": event.id, "type": "function"}
            call["function"] = {"name": event.name, "arguments": ""}
        else:
            assert isinstance(event, Arguments)
            call["function"] = {"arguments": event.text}
        chunk = self.chunk(None, None, index)
        chunk["choices"][0]["delta"]["tool_calls"] = [call]
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
        chunks = []
        for i, result in enumerate(results):
            reader = self._readers.get(i)
            if reader is not None:
                chunks += [self._event_chunk(event, i) for event in reader.close()]
            called = reader is not None and bool(reader.calls) and not self.forced
            finish = self.chunk(None if self.chat else "", _finish(result, called), i)
            chunks.append(self._with_logprobs(finish, self._held.pop(i, ())))
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


def _finish(result: Completion, called: bool = False) -> Literal["stop", "length", "tool_calls"]:
    if result.finish_reason == "length":
        return "length"  # a call cut off says so: its arguments are incomplete
    return "tool_calls" if called else "stop"


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
