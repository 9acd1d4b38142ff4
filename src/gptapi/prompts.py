"""Every task prompt, in one place.

An instruct model (its GGUF carries ``tokenizer.chat_template``) gets chat messages rendered with
its own template. A base model (no template, like the embedded Gemma 3 270M) gets a completion
prompt in a shape such models continue well, plus stop strings that end the answer where a base
model would otherwise ramble on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from jinja2.sandbox import ImmutableSandboxedEnvironment

from gptapi.engine import ModelInfo


@dataclass(frozen=True)
class TaskPrompt:
    text: str
    stop: tuple[str, ...]
    # Answers and summaries are read by people: leading blank lines are noise, not content.
    skip_leading_whitespace: bool = True


@lru_cache(maxsize=4)
def _compile(template: str):  # type: ignore[no-untyped-def]
    # Templates come from the model file: render them sandboxed.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_chat(info: ModelInfo, messages: list[dict[str, str]]) -> str:
    """Render messages with the model's chat template, ready for the model to answer."""
    assert info.chat_template is not None
    return render_template(info.chat_template, messages, info.bos_token, info.eos_token)


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
    if info.chat_template:
        return TaskPrompt(render_chat(info, messages), ())
    # A base model has no turn format of its own: a plain transcript it continues as the
    # assistant, cut where it would start writing the user's next turn.
    lines = [f"{_SPEAKERS[m['role']]}: {m['content'].strip()}" for m in messages]
    return TaskPrompt("\n".join([*lines, "Assistant:"]), ("\nUser:", "\nSystem:"))


_SPEAKERS = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}


def _chat(info: ModelInfo, instruction: str) -> TaskPrompt:
    return TaskPrompt(render_chat(info, [{"role": "user", "content": instruction}]), ())


def generate_prompt(info: ModelInfo, prompt: str) -> TaskPrompt:
    if info.chat_template:
        return _chat(info, prompt)
    # Free generation continues the user's text exactly as the model produces it.
    return TaskPrompt(prompt, (), skip_leading_whitespace=False)


def summarize_prompt(info: ModelInfo, text: str, max_words: int | None) -> TaskPrompt:
    length = f"in at most {max_words} words" if max_words else "in one sentence"
    if info.chat_template:
        return _chat(
            info,
            f"Summarize the following text {length}. Reply with the summary only.\n\n{text}",
        )
    return TaskPrompt(f"Text: {text.strip()}\nSummary {length}:", ("\n",))


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
        return TaskPrompt(
            f"Context: {context.strip()}\nQuestion: {question.strip()}\nAnswer:", ("\n",)
        )
    return TaskPrompt(f"Q: {question.strip()}\nA:", ("\n",))
