"""Request and response bodies of the OpenAI-compatible ``/v1`` API.

Requests follow OpenAI's field names. Fields gptapi accepts but cannot honour (``n`` > 1,
``logprobs``, ``tools``, penalties, …) are declared so the client gets a 400 naming them, rather
than silence; anything else unknown is refused by ``extra="forbid"``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gptapi.api.schemas import CleanStr, StopString, Text

_V1 = ConfigDict(extra="forbid")


class StreamOptions(BaseModel):
    model_config = _V1
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


class V1Sampling(BaseModel):
    model_config = _V1

    model: CleanStr | None = Field(
        None, max_length=256, description="Ignored: the server serves the model it loaded."
    )
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy and deterministic.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: StopString | list[StopString] | None = Field(
        None, max_length=64, description="Up to GPTAPI_MAX_STOP_STRINGS strings."
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 2, description="Same seed, same output.")
    n: int = Field(1, ge=1, le=128, description="Only 1 is supported.")
    stream: bool = Field(False, description="Server-Sent Events in OpenAI's chunk format.")
    stream_options: StreamOptions | None = None
    user: CleanStr | None = Field(None, max_length=256, description="Accepted and ignored.")
    # Accepted by OpenAI, refused here with a 400 that names them.
    logprobs: Any = None
    top_logprobs: Any = None
    logit_bias: Any = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(V1Sampling):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "gptapi", "prompt": "Once upon a time"}]},
    )

    prompt: Text | list[Text] = Field(..., description="One prompt (a list must hold exactly one).")
    max_tokens: int | None = Field(16, ge=1, description="Most tokens to generate (default 16).")
    echo: bool = False
    suffix: CleanStr | None = None
    best_of: int | None = None


class TextPart(BaseModel):
    """A content part; only text parts exist here, checked exactly like a plain string."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | Annotated[list[TextPart], Field(min_length=1, max_length=256)] = Field(
        ..., description="Text, or a list of {'type': 'text', 'text': ...} parts."
    )
    name: CleanStr | None = Field(None, max_length=64)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(V1Sampling):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "gptapi", "messages": [{"role": "user", "content": "Say hello."}]}
            ]
        },
    )

    messages: list[ChatMessage] = Field(..., min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(None, ge=1, description="Same as max_tokens.")
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    parallel_tool_calls: Any = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(
        description="Prompt tokens not computed: restored from the prompt cache or shared with a "
        "concurrent request."
    )


class V1Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: V1Usage | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: V1Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "gptapi"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
