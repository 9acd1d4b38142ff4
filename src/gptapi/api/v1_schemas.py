"""Request and response bodies of the OpenAI-compatible ``/v1`` API.

Requests follow OpenAI's field names and are read the way its peers read them (llama-server,
vLLM), because that is how clients send them: ``null`` means absent for every field (the
``openai`` SDK sends ``null`` whenever a caller passes ``None``), and unknown keys, at the top
level and inside messages (the SDK's ``store``, ``metadata``, ``service_tier``, a message's
``id``, ...), are kept aside in ``model_extra`` for the route to ignore and count, or to refuse
with ``GPTAPI_V1_STRICT``. Fields gptapi declares but cannot honour as sent (``echo``,
``best_of``, the deprecated ``functions``, ...) get a 400 that names them, rather than silence.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gptapi.api.schemas import (
    FREQUENCY_PENALTY,
    PRESENCE_PENALTY,
    REPETITION_PENALTY,
    CleanStr,
    StopString,
    Text,
)


class Lenient(BaseModel):
    """A /v1 request body or part of one: ``null`` is absent, unknown keys are kept aside."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    def unknown_fields(self, prefix: str = "") -> list[str]:
        """Dotted names of the keys this body has and no field declares, nested ones too."""
        names = [prefix + name for name in self.model_extra or {}]
        for name, value in self:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, Lenient):
                    names += item.unknown_fields(f"{prefix}{name}.")
        return sorted(set(names))


class StreamOptions(Lenient):
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


class V1Sampling(Lenient):
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
    n: int = Field(
        1,
        ge=1,
        le=16,
        description="Choices: n sequences of the prompt, computed once and shared; each counts "
        "against slots and this key's limits as a request. With a seed, choice i uses seed + i.",
    )
    stream: bool = Field(False, description="Server-Sent Events in OpenAI's chunk format.")
    stream_options: StreamOptions | None = None
    user: CleanStr | None = Field(None, max_length=256, description="Accepted and ignored.")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description=PRESENCE_PENALTY)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description=FREQUENCY_PENALTY)
    repetition_penalty: float = Field(
        1.0, gt=0.0, le=2.0, description=REPETITION_PENALTY + " Also read as repeat_penalty."
    )
    logit_bias: dict[int, Annotated[float, Field(ge=-100, le=100)]] = Field(
        default_factory=dict,
        max_length=1024,
        description="Token id -> value added to its logit (-100..100; -100 bans it, 100 "
        "makes it all but certain). Ids as /tokenize gives them.",
    )
    response_format: dict[str, Any] | None = Field(
        None,
        description="Structured output: {'type': 'json_object'} for any JSON object, or "
        "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}, 'strict': true}}; "
        "the output is constrained by a grammar (supported schema keywords: README).",
    )

    @model_validator(mode="before")
    @classmethod
    def _repeat_penalty_alias(cls, data: Any) -> Any:
        # llama-server's name for it.
        if isinstance(data, dict) and "repeat_penalty" in data:
            data = dict(data)
            data.setdefault("repetition_penalty", data.pop("repeat_penalty"))
        return data

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(V1Sampling):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"model": "gptapi", "prompt": "Once upon a time"}]},
    )

    prompt: Text | list[Text] = Field(..., description="One prompt (a list must hold exactly one).")
    logprobs: int | None = Field(
        None, ge=0, le=20, description="Each token's logprob and this many top alternatives."
    )
    max_tokens: int | None = Field(16, ge=1, description="Most tokens to generate (default 16).")
    echo: bool = False
    suffix: CleanStr | None = None
    best_of: int | None = None


# OpenAI's rule for function names; it also keeps them safe inside a grammar's literals.
FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class FunctionDefinition(Lenient):
    name: FunctionName
    description: CleanStr | None = Field(None, max_length=8192)
    parameters: dict[str, Any] | None = Field(
        None,
        description="JSON Schema of the arguments object (supported keywords: README); none "
        "= no arguments.",
    )
    strict: bool | None = Field(None, description="Accepted: arguments always follow the schema.")


class ToolDefinition(Lenient):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionRef(Lenient):
    name: FunctionName


class NamedToolChoice(Lenient):
    type: Literal["function"]
    function: FunctionRef


class FunctionCall(Lenient):
    name: FunctionName
    arguments: CleanStr = Field(max_length=65536, description="The arguments, as JSON text.")


class ToolCall(Lenient):
    """A call the assistant made, as the client echoes it back in the history."""

    id: CleanStr = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class TextPart(Lenient):
    """A content part; only text parts exist here, checked exactly like a plain string."""

    type: Literal["text"]
    text: Text


class ChatMessage(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | Annotated[list[TextPart], Field(min_length=1, max_length=256)] | None = Field(
        None,
        description="Text, or a list of {'type': 'text', 'text': ...} parts. An assistant turn "
        "of the history may have none (null or empty).",
    )
    name: CleanStr | None = Field(None, max_length=64)
    tool_calls: list[ToolCall] | None = Field(
        None, max_length=64, description="An assistant turn's calls."
    )
    tool_call_id: CleanStr | None = Field(
        None, max_length=256, description="A tool turn: the call it answers."
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_assistant_turn(cls, data: Any) -> Any:
        # What the SDK echoes back for an assistant turn without text: "" or null (dropped).
        if isinstance(data, dict) and data.get("role") == "assistant" and data.get("content") == "":
            return {key: value for key, value in data.items() if key != "content"}
        return data

    @model_validator(mode="after")
    def _content_unless_assistant(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message has tool_calls")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(V1Sampling):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"model": "gptapi", "messages": [{"role": "user", "content": "Say hello."}]}
            ]
        },
    )

    messages: list[ChatMessage] = Field(..., min_length=1, max_length=256)
    logprobs: bool = Field(False, description="Each output token's log probability.")
    top_logprobs: int = Field(
        0, ge=0, le=20, description="With logprobs: the likeliest alternatives at each token."
    )
    max_completion_tokens: int | None = Field(None, ge=1, description="Same as max_tokens.")
    tools: list[ToolDefinition] = Field(
        default_factory=list,
        max_length=128,
        description="Functions the model may call; calls follow each function's schema.",
    )
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None,
        description="'auto' (the default with tools): the model answers or calls; 'required': "
        "it calls one or more; {'type': 'function', 'function': {'name': ...}}: it calls that "
        "one; 'none': it answers in text.",
    )
    parallel_tool_calls: bool = Field(True, description="Up to 8 calls in one turn, else one.")
    functions: Any = Field(None, description="Deprecated by OpenAI: use tools.")
    function_call: Any = Field(None, description="Deprecated by OpenAI: use tool_choice.")


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


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob]


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: V1Usage | None = None


class CalledFunction(BaseModel):
    name: str
    arguments: str = Field(description="JSON text valid against the function's schema.")


class CalledTool(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[CalledTool] | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls"]


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
