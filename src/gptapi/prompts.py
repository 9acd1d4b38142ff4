"""Every task prompt, in one place.

An instruct model (its GGUF carries ``tokenizer.chat_template``) gets chat messages rendered with
its own template. A base model (no template, like the embedded Gemma 3 270M) gets a completion
prompt in a shape such models continue well, plus stop strings that end the answer where a base
model would otherwise ramble on.

Every prompt is a tuple of parts, and only the chat template's own text is markup (its
``<start_of_turn>`` becomes a control token). Message contents, task instructions and everything
a base model gets are text: a user who writes ``<end_of_turn>`` writes characters, not a turn.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache

from jinja2.sandbox import ImmutableSandboxedEnvironment

from gptapi.engine import ModelInfo, PromptPart
from gptapi.errors import InvalidRequest


@dataclass(frozen=True)
class TaskPrompt:
    parts: tuple[PromptPart, ...]
    stop: tuple[str, ...]
    # Answers and summaries are read by people: leading blank lines are noise, not content.
    skip_leading_whitespace: bool = True

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts)


def text_prompt(text: str, stop: tuple[str, ...] = (), *, skip: bool = True) -> TaskPrompt:
    """A prompt that is all text (no markup): base models, /v1/completions."""
    return TaskPrompt((PromptPart(text),), stop, skip_leading_whitespace=skip)


class _TemplateRefusal(Exception):
    """The template's own ``raise_exception`` (e.g. "roles must alternate"): meant for clients."""


@lru_cache(maxsize=4)
def _compile(template: str):  # type: ignore[no-untyped-def]
    # Templates come from the model file: render them sandboxed.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise _TemplateRefusal(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_chat(info: ModelInfo, messages: list[dict[str, str]]) -> tuple[PromptPart, ...]:
    """Render messages with the model's chat template, ready for the model to answer: the
    template's text as markup, each message's content as text.

    The template is rendered twice: with a random placeholder for each content (so its markup is
    known to hold no user text) and with the real contents; the contents are then cut out of the
    second rendering as the template wrote them (as they are, or trimmed). A template that
    changes contents otherwise gets a 400: better than guessing which text is markup."""
    assert info.chat_template is not None
    nonce = secrets.token_hex(8)
    holders = [f"@@{nonce}:{i}@@" for i in range(len(messages))]
    try:
        real = render_template(info.chat_template, messages, info.bos_token, info.eos_token)
        held = render_template(
            info.chat_template,
            [{**m, "content": holder} for m, holder in zip(messages, holders, strict=True)],
            info.bos_token,
            info.eos_token,
        )
    except _TemplateRefusal as exc:
        raise InvalidRequest(f"messages: the model's chat template refused them: {exc}") from None
    except Exception as exc:  # a template is a program: any error of it, for these messages
        raise InvalidRequest(
            f"messages: the model's chat template cannot render them ({type(exc).__name__})"
        ) from None
    return _split(real, held, holders, [m["content"] for m in messages])


def _split(real: str, held: str, holders: list[str], contents: list[str]) -> tuple[PromptPart, ...]:
    markups: list[str] = []  # held == markups[0] holders[0] markups[1] ... markups[-1]
    rest = held
    for holder in holders:
        markup, found, rest = rest.partition(holder)
        if not found or holder in rest:
            raise InvalidRequest(_UNSPLITTABLE)
        markups.append(markup)
    markups.append(rest)
    parts: list[PromptPart] = []
    pos = 0  # in `real`
    for i, content in enumerate(contents):
        if not real.startswith(markups[i], pos):
            raise InvalidRequest(_UNSPLITTABLE)
        pos += len(markups[i])
        follows = markups[i + 1]
        written = next((c for c in _as_written(content) if real.startswith(c + follows, pos)), None)
        if written is None:
            raise InvalidRequest(_UNSPLITTABLE)
        parts += [PromptPart(markups[i], markup=True), PromptPart(written)]
        pos += len(written)
    if real[pos:] != markups[-1]:
        raise InvalidRequest(_UNSPLITTABLE)
    parts.append(PromptPart(markups[-1], markup=True))
    return tuple(p for p in parts if p.text)


def _as_written(content: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((content, content.strip(), content.rstrip(), content.lstrip())))


_UNSPLITTABLE = (
    "messages: the model's chat template rewrites message text, so this server cannot keep "
    "it apart from the template's markup"
)


def render_template(
    template: str, messages: list[dict[str, str]], bos_token: str = "", eos_token: str = ""
) -> str:
    text: str = _compile(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
    )
    # The engine adds BOS itself when tokenizing; a second one would derail the model.
    if bos_token and text.startswith(bos_token):
        text = text[len(bos_token) :]
    return text


def chat_prompt(info: ModelInfo, messages: list[dict[str, str]]) -> TaskPrompt:
    """A whole conversation, for /v1/chat/completions."""
    # OpenAI's clients get the reply as the model wrote it, leading whitespace included.
    if info.chat_template:
        return TaskPrompt(render_chat(info, messages), (), skip_leading_whitespace=False)
    # A base model has no turn format of its own: a plain transcript it continues as the
    # assistant, cut where it would start writing the user's next turn.
    lines = [f"{_SPEAKERS[m['role']]}: {m['content'].strip()}" for m in messages]
    return text_prompt("\n".join([*lines, "Assistant:"]), ("\nUser:", "\nSystem:"), skip=False)


_SPEAKERS = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}


def _chat(info: ModelInfo, instruction: str) -> TaskPrompt:
    return TaskPrompt(render_chat(info, [{"role": "user", "content": instruction}]), ())


def generate_prompt(info: ModelInfo, prompt: str) -> TaskPrompt:
    if info.chat_template:
        return _chat(info, prompt)
    # Free generation continues the user's text exactly as the model produces it.
    return text_prompt(prompt, skip=False)


def summarize_prompt(info: ModelInfo, text: str, max_words: int | None) -> TaskPrompt:
    length = f"in at most {max_words} words" if max_words else "in one sentence"
    if info.chat_template:
        return _chat(
            info,
            f"Summarize the following text {length}. Reply with the summary only.\n\n{text}",
        )
    return text_prompt(f"Text: {text.strip()}\nSummary {length}:", ("\n",))


def answer_prompt(info: ModelInfo, question: str, context: str | None) -> TaskPrompt:
    if info.chat_template:
        if context:
            return _chat(
                info,
                "Answer the question using only the context below. If the context does not "
                "hold the answer, say so.\n\n"
                f"Context:\n{context}\n\nQuestion: {question}",
            )
        return _chat(info, f"Answer the question concisely.\n\nQuestion: {question}")
    if context:
        return text_prompt(
            f"Context: {context.strip()}\nQuestion: {question.strip()}\nAnswer:", ("\n",)
        )
    return text_prompt(f"Q: {question.strip()}\nA:", ("\n",))
