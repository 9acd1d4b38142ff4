"""Request and response bodies of the task endpoints.

Fields are bounded here; limits that depend on settings (max_tokens ceiling, text length) are
checked by ``limits`` against the running configuration.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=False)
# C0 controls other than tab, newline and carriage return: never text, and NUL would cut the
# string short on its way into C.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters such as NUL")
    if _SURROGATE.search(value):
        # JSON's "\udfff" escape decodes to half a UTF-16 pair, which no UTF-8 text holds.
        raise ValueError("must be valid Unicode: a lone surrogate (\\ud800-\\udfff) is not")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain more than whitespace")
    return _clean(value)


# One rule for every string a client sends: no control characters but tab, newline and carriage
# return, no lone surrogates. Text that goes into a prompt must also hold more than whitespace.
CleanStr = Annotated[str, AfterValidator(_clean)]
Text = Annotated[str, Field(min_length=1), AfterValidator(_text)]
StopString = Annotated[CleanStr, Field(min_length=1)]


PRESENCE_PENALTY = (
    "OpenAI's: subtracted once from the logit of every token already generated (-2..2, 0 = off)."
)
FREQUENCY_PENALTY = (
    "OpenAI's: subtracted from a token's logit per time it was generated so far (-2..2, 0 = off)."
)
REPETITION_PENALTY = (
    "llama.cpp's repeat penalty (vLLM's repetition_penalty): the logits of generated tokens are "
    "divided by it when positive, multiplied when negative (1 = off)."
)


class SamplingFields(BaseModel):
    model_config = _STRICT

    max_tokens: int | None = Field(
        None, ge=1, description="Most tokens to generate (default and ceiling: server settings)."
    )
    temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="0 = greedy and deterministic; higher = more varied."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(
        40, ge=0, le=1000, description="Sample among the k likeliest tokens (0 = all)."
    )
    seed: int | None = Field(
        None, ge=0, le=2**32 - 2, description="Seed for sampling; same seed, same output."
    )
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description=PRESENCE_PENALTY)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description=FREQUENCY_PENALTY)
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0, description=REPETITION_PENALTY)
    json_schema: dict[str, Any] | None = Field(
        None,
        description="Structured output: the text is JSON valid against this JSON Schema, "
        "constrained by a grammar while it is generated (supported keywords: README). A "
        "'length' finish means it was cut off.",
    )
    stream: bool = Field(
        False,
        description="Send Server-Sent Events: a `data:` event per text chunk as it is "
        "generated, a final event with finish_reason, usage and timings, then `data: [DONE]`.",
    )


class GenerateRequest(SamplingFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"prompt": "Once upon a time", "max_tokens": 32, "temperature": 0.7}]
        },
    )

    prompt: Text = Field(..., description="Text for the model to continue.")
    stop: list[StopString] = Field(
        default_factory=list,
        max_length=64,
        description="Generation ends before the first of these it produces (at most "
        "GPTAPI_MAX_STOP_STRINGS strings of GPTAPI_MAX_STOP_CHARS characters; 4 and 64 by "
        "default).",
    )


class SummarizeRequest(SamplingFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "The city council met on Tuesday and voted to extend library hours "
                    "on weekends, citing rising demand from students.",
                    "max_words": 20,
                }
            ]
        },
    )

    text: Text = Field(..., description="The text to summarize.")
    max_words: int | None = Field(None, ge=1, le=1000, description="Upper bound on summary words.")


class AnswerRequest(SamplingFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "question": "What is the access code?",
                    "context": "The access code for the lab is 7731.",
                }
            ]
        },
    )

    question: Text = Field(..., description="The question to answer.")
    context: Text | None = Field(
        None, description="Text holding the answer; when given, the answer comes from it."
    )


class Usage(BaseModel):
    prompt_tokens: int
    cached_tokens: int = Field(
        description="Prompt tokens not computed for this request: restored from the prompt cache "
        "or shared with a concurrent request."
    )
    completion_tokens: int
    total_tokens: int


class Timings(BaseModel):
    queue_ms: float = Field(description="Waiting for a free decode slot.")
    time_to_first_token_ms: float | None = Field(description="From arrival to the first token.")
    total_ms: float = Field(description="Queue plus decode.")
    tokens_per_s: float = Field(description="Decode rate after the first token.")


class TaskResponse(BaseModel):
    id: str = Field(description="Request id, also sent as the X-Request-ID header.")
    model: str
    text: str
    finish_reason: Literal["stop", "length", "cancelled", "error"]
    usage: Usage
    timings: Timings


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    model: str
    engine: str = Field(description="batched or pool.")
    slots: int = Field(description="Requests that can decode at once.")
    busy_slots: int = Field(description="Requests decoding now.")
    queued: int = Field(description="Requests waiting for a slot.")


class ErrorDetail(BaseModel):
    type: str
    message: str
    code: str
    request_id: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
