"""The engine interface the HTTP layer depends on, free of llama.cpp types."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class PromptPart:
    """A piece of a prompt. User text is data: its ``<start_of_turn>`` is seven characters, never
    a control token. Only ``markup`` parts (what a chat template itself writes around the
    messages) have their special-token text turned into special tokens."""

    text: str
    markup: bool = False


# A plain string is one part of user text.
Prompt = str | Sequence[PromptPart]


def prompt_parts(prompt: Prompt) -> Sequence[PromptPart]:
    return (PromptPart(prompt),) if isinstance(prompt, str) else prompt


def prompt_text(prompt: Prompt) -> str:
    return "".join(part.text for part in prompt_parts(prompt))


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 40
    stop: tuple[str, ...] = ()
    seed: int | None = None
    skip_leading_whitespace: bool = False
    # OpenAI's penalties over the tokens generated so far (not the prompt): presence subtracts
    # once per token seen, frequency once per occurrence; 0 = off.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # llama.cpp's multiplicative repeat penalty on the same tokens (1.0 = off).
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    grammar: str | None = None  # GBNF the output must follow (structured output), root "root"
    # Lazy grammar (tool calls the model may or may not make): the output is free until it
    # writes this text, and the grammar applies to what follows it.
    grammar_trigger: str | None = None
    logprobs: int | None = None  # None: off; k: each token's logprob and its k top alternatives
    # The client reads tokens as they come (a stream): its steps keep the step-time target.
    # Not streamed, only the total time counts (engine/step_budget.py).
    streamed: bool = True

    @property
    def shapes_logits(self) -> bool:
        """Whether anything but temperature, top-k and top-p changes the distribution."""
        return bool(
            self.presence_penalty
            or self.frequency_penalty
            or self.repetition_penalty != 1.0
            or self.logit_bias
        )


@dataclass(frozen=True)
class ModelInfo:
    id: str
    path: Path
    size_bytes: int
    origin: str
    n_ctx: int  # context one request can use: prompt + output tokens
    chat_template: str | None
    bos_token: str
    eos_token: str
    # The text of every control token (``<start_of_turn>``, ``<|im_end|>``, ...): what must never
    # reach a markup part from a client's strings.
    control_texts: frozenset[str] = frozenset()
    add_bos: bool = True  # the engine puts BOS before every prompt (the vocabulary says so)


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token and its log probability under the model's distribution (the raw
    logits' log-softmax: before temperature, penalties or a grammar), with the likeliest
    alternatives at that step."""

    token: bytes  # a piece may be part of a UTF-8 character
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass(frozen=True)
class Delta:
    """What one decode step produced for one sequence."""

    text: str  # newly released text, possibly empty (held back for UTF-8 or a stop string)
    completion_tokens: int  # tokens generated so far
    finish_reason: FinishReason | None = None
    cached_tokens: int = 0  # prompt tokens not computed (prompt cache or a concurrent request)
    prompt_done: int = 0  # prompt tokens in the KV cache so far (progress deltas)
    logprobs: tuple[TokenLogprob, ...] = ()  # the step's token, when the request asked

    @property
    def is_progress(self) -> bool:
        """No token yet: a step computed part of the prompt (text empty, nothing finished)."""
        return self.completion_tokens == 0 and self.finish_reason is None


@dataclass(frozen=True)
class PromptStats:
    shared_tokens: int  # taken over from another active sequence's KV cells
    cache_budget_bytes: int
    cache_entries: int
    cache_bytes: int
    cache_hit_tokens: int  # restored from the prompt cache
    cache_miss_tokens: int  # prompt tokens of new sequences the cache did not have
    cache_evictions: int


_STEP_WEIGHT = 0.3  # weight of the newest whole step in the decode times served


@dataclass(frozen=True)
class Speeds:
    """This machine's speeds for this model: measured by the engine at start-up (idle), then
    the decode steps as served (``after_step``)."""

    prompt_token_s: float  # seconds per prompt token in a whole chunk
    decode_1_s: float  # a step decoding one sequence's token
    decode_full_s: float  # a step decoding one token for every slot
    slots: int

    def decode_s(self, n: int) -> float:
        """A step decoding ``n`` tokens: between the two measured counts, linearly."""
        if self.slots <= 1:
            return self.decode_1_s
        share = (min(max(n, 1), self.slots) - 1) / (self.slots - 1)
        return self.decode_1_s + share * (self.decode_full_s - self.decode_1_s)

    def after_step(self, n_decoding: int, n_prompt: int, seconds: float) -> Speeds:
        """These speeds with a served step of 1 or ``slots`` decoding tokens and no prompt
        folded in (a moving average). ``seconds`` is the whole step, sampling included: the
        start-up measurement runs on an idle process, and served steps took 1.09-1.66x as long
        as its first version (one bare ``llama_decode``) on the 4B twin (docs/stress-test.md):
        the rest of the process and the clients share the cores."""
        if n_prompt or n_decoding not in (1, self.slots):
            return self

        def moved(old: float) -> float:
            return (1 - _STEP_WEIGHT) * old + _STEP_WEIGHT * seconds

        if n_decoding == self.slots and self.slots > 1:
            return replace(self, decode_full_s=moved(self.decode_full_s))
        if self.slots == 1:  # one step is both counts
            return replace(
                self, decode_1_s=moved(self.decode_1_s), decode_full_s=moved(self.decode_full_s)
            )
        return replace(self, decode_1_s=moved(self.decode_1_s))


class EngineError(Exception):
    """Generation failed for this request only (e.g. llama_decode refused its batch)."""


class EngineOverloaded(EngineError):
    """The KV cache had no room for this request's batch (llama_decode returned 1): a matter of
    load, not of the request, so the client may retry (503)."""


class Engine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    @property
    def slots(self) -> int:
        """Sequences that can decode at once; admission never lets more in."""
        ...

    def prompt_stats(self) -> PromptStats:
        """What prompt processing was saved so far: shared between sequences, or cached."""
        ...

    def tokenize(self, prompt: Prompt) -> list[int]:
        """BOS (if the vocabulary asks for it), then each part's tokens; special-token text is
        parsed in markup parts only. Thread-safe; may block for long texts, so call it off the
        event loop."""
        ...

    def check_grammar(self, grammar: str) -> None:
        """ValueError when llama.cpp cannot parse this GBNF grammar. Thread-safe."""
        ...

    def pieces(self, tokens: list[int]) -> list[bytes]:
        """Each token's bytes (a piece may be part of a UTF-8 character). ValueError for an id
        outside the vocabulary. Thread-safe."""
        ...

    def generate(
        self, tokens: list[int], params: SamplingParams, *, scope: str = ""
    ) -> AsyncGenerator[Delta, None]:
        """Stream deltas until one carries a finish_reason. Closing the iterator early cancels
        the sequence and frees its slot within one decode step. Computed prompt KV (the prompt
        cache, prefixes shared with running sequences) is reused only within one ``scope``."""
        ...

    def speeds(self) -> Speeds | None:
        """Speeds measured at start-up, then updated by the decode steps served, for the
        deadline forecast before any request has finished; None when this engine has none."""
        ...

    def healthy(self) -> bool:
        """False once the engine cannot serve any more (a scheduler thread has died): /ready
        answers 503 and requests are refused instead of waiting for a thread that is gone."""
        ...

    def close(self) -> None: ...
