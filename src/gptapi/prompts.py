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

import contextlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Undefined, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

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


class _GenerationTag(Extension):
    """Hugging Face's ``{% generation %}...{% endgeneration %}`` (it marks the assistant's text
    for training masks): here it renders what it holds."""

    tags = {"generation"}  # noqa: RUF012 (jinja2 reads it from the class)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Absent(Undefined):
    """A variable the template uses and nobody passes (firefunction's ``functions`` and
    ``datetime``, written for its own caller) is empty text, also when added to a string, as
    llama-server's renderer has it; every other use of it fails as in Jinja."""

    def __add__(self, *args: Any, **kwargs: Any) -> Any:
        if self._undefined_obj is not missing:  # a missing key or attribute: Jinja's error
            self._fail_with_undefined_error()
        return args[0]

    __radd__ = __add__


@lru_cache(maxsize=4)
def _compile(template: str):  # type: ignore[no-untyped-def]
    # Templates come from the model file: render them sandboxed, in the environment Hugging
    # Face's apply_chat_template gives them (what they are written and tested against).
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[loopcontrols, _GenerationTag],
        undefined=_Absent,
    )

    def raise_exception(message: str) -> None:
        raise _TemplateRefusal(message)

    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = _tojson
    return env.from_string(template)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """Hugging Face's ``tojson`` (what templates are written for): plain JSON in the given order,
    with its arguments. Jinja's own sorts the keys and escapes ``<``, ``>``, ``&`` and ``'`` for
    HTML, so a tool description "a < b" reached the model as "a \\u003c b"."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def render_chat(
    info: ModelInfo, messages: list[dict[str, Any]], **variables: Any
) -> tuple[PromptPart, ...]:
    """Render messages with the model's chat template, ready for the model to answer: the
    template's text as markup, each message's content as text. ``variables`` go to the
    template as they are (``tools``): the caller checks they hold no control-token text.

    The template is rendered twice: with a random placeholder for each content (so its markup is
    known to hold no user text) and with the real contents; the contents are then cut out of the
    second rendering as the template wrote them (as they are, or trimmed). A template that
    changes contents otherwise gets a 400: better than guessing which text is markup."""
    assert info.chat_template is not None
    nonce = secrets.token_hex(8)
    variables |= {"now": datetime.now(), "strip_bos": info.add_bos}
    held_messages: list[dict[str, Any]] = []
    contents: dict[int, str] = {}
    for i, message in enumerate(messages):
        if message.get("content"):  # an empty one stays empty: templates often skip it
            contents[i] = message["content"]
            message = {**message, "content": f"@@{nonce}:{i}@@"}
        held_messages.append(message)
    try:
        real = render_template(
            info.chat_template, messages, info.bos_token, info.eos_token, **variables
        )
        held = render_template(
            info.chat_template, held_messages, info.bos_token, info.eos_token, **variables
        )
    except _TemplateRefusal as exc:
        raise InvalidRequest(f"messages: the model's chat template refused them: {exc}") from None
    except Exception as exc:  # a template is a program: any error of it, for these messages
        raise InvalidRequest(
            f"messages: the model's chat template cannot render them ({type(exc).__name__})"
        ) from None
    return _split(real, held, re.compile(f"@@{nonce}:(\\d+)@@"), contents)


def _split(
    real: str, held: str, holder: re.Pattern[str], contents: dict[int, str]
) -> tuple[PromptPart, ...]:
    """Cut ``real`` where ``held`` has placeholders, in the order the template wrote them (a
    template may move a message: Mistral's puts the system message in the last user turn; or
    repeat one; one it leaves out is refused)."""
    pieces = holder.split(held)  # markup, index, markup, index, ..., markup
    markups, order = pieces[0::2], [int(i) for i in pieces[1::2]]
    left_out = sorted(set(contents) - set(order))
    if left_out:  # a role the template does not know: the message would silently vanish
        raise InvalidRequest(
            f"messages[{left_out[0]}]: the model's chat template leaves this message out or "
            "rewrites its text"
        )
    parts: list[PromptPart] = []
    pos = 0  # in `real`
    for k, index in enumerate(order):
        if not real.startswith(markups[k], pos):
            raise InvalidRequest(_UNSPLITTABLE)
        pos += len(markups[k])
        follows = markups[k + 1]
        written = next(
            (c for c in _as_written(contents[index]) if real.startswith(c + follows, pos)), None
        )
        if written is None:
            raise InvalidRequest(_UNSPLITTABLE)
        parts += [PromptPart(markups[k], markup=True), PromptPart(written)]
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
    template: str,
    messages: list[dict[str, Any]],
    bos_token: str = "",
    eos_token: str = "",
    *,
    now: datetime | None = None,
    strip_bos: bool = True,
    **variables: Any,
) -> str:
    """``now``: the one clock of ``strftime_now`` (two renders of one prompt must agree).
    ``strip_bos``: the engine adds BOS itself (the vocabulary says so); a second would derail
    the model."""
    clock = now or datetime.now()
    # Tools and documents are left undefined when not given (``tools is defined`` is how
    # templates ask; the "tool_use" variants iterate them unguarded).
    text: str = _compile(template).render(
        **variables,
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
        strftime_now=clock.strftime,
    )
    if strip_bos and bos_token and text.startswith(bos_token):
        text = text[len(bos_token) :]
    return text


def chat_prompt(
    info: ModelInfo,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    must_call: bool | str = False,
) -> TaskPrompt:
    """A whole conversation, for /v1/chat/completions; with ``tools`` (OpenAI's definitions),
    the model is told it may call them (``must_call``: it will call at least one, or the one
    named)."""
    # OpenAI's "developer" is the system turn of models that know no such role (all of them).
    messages = [{**m, "role": "system"} if m["role"] == "developer" else m for m in messages]
    if info.chat_template and native_tools(info.chat_template):
        native = [_native_message(m) for m in messages]
        # What the template writes as markup, as it will write it (arguments decoded: a
        # "\u003c" in them is a "<" there).
        check_no_control_text(info, tools or [], "tools")
        for i, message in enumerate(native):
            markup = {key: value for key, value in message.items() if key != "content"}
            check_no_control_text(info, markup, f"messages[{i}]")
        variables = {"tools": tools} if tools else {}
        return TaskPrompt(render_chat(info, native, **variables), (), skip_leading_whitespace=False)
    messages = _generic_history(messages)
    if tools:
        messages = _with_instruction(messages, _tools_instruction(tools, must_call))
    # OpenAI's clients get the reply as the model wrote it, leading whitespace included.
    if info.chat_template:
        return TaskPrompt(render_chat(info, messages), (), skip_leading_whitespace=False)
    # A base model has no turn format of its own: a plain transcript it continues as the
    # assistant, cut where it would start writing the user's next turn.
    lines = [f"{_SPEAKERS[m['role']]}: {m['content'].strip()}" for m in messages]
    return text_prompt("\n".join([*lines, "Assistant:"]), ("\nUser:", "\nSystem:"), skip=False)


_SPEAKERS = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}

# Tool calls, as the model writes them: Hermes's format, which Qwen 2.5 / 3, Hermes and many
# other models are trained on. Templates that write it are given the tools to render
# themselves; every other model (a base model, Gemma, a template with another call format) gets
# the tools and this format described in a system message (docs: README, "Tools").
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_CALL_NAME = '\n{"name": "'  # after TOOL_CALL_OPEN
TOOL_CALL_ARGUMENTS = '", "arguments": '
TOOL_CALL_END = "}\n" + TOOL_CALL_CLOSE


def tool_call_text(name: str, arguments: str) -> str:
    """One call in the format above; arguments that are not JSON are written as a string."""
    try:
        json.loads(arguments)
    except ValueError:
        arguments = json.dumps(arguments)
    return f"{TOOL_CALL_OPEN}{TOOL_CALL_NAME}{name}{TOOL_CALL_ARGUMENTS}{arguments}{TOOL_CALL_END}"


def native_tools(template: str) -> bool:
    """Whether the chat template renders tools itself and writes calls in this format (JSON
    with "arguments" inside ``<tool_call>``: Qwen 2.5, Qwen3 0.6B-8B, QwQ, Hermes, Granite 4.0,
    ...); not those with an XML call format inside the same tags (Qwen3-Coder's
    ``<function=...>``, GLM's ``<arg_key>``), whose models get the generic format."""
    return "tools" in template and TOOL_CALL_OPEN in template and '"arguments": ' in template


def check_no_control_text(info: ModelInfo, value: Any, where: str = "") -> None:
    """Strings a template renders as markup (tool definitions, calls in the history) must not
    hold the text of a control token: there it would become the token itself."""
    if isinstance(value, str):
        found = next((c for c in info.control_texts if c in value), None)
        if found is not None:
            raise InvalidRequest(
                f"{where or 'request'}: holds {found!r}, a control token of this model"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_no_control_text(info, key, where)
            check_no_control_text(info, item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_no_control_text(info, item, f"{where}[{i}]")


def _native_message(message: dict[str, Any]) -> dict[str, Any]:
    """As Hugging Face's chat templates expect a message: a call's arguments as an object."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    native = []
    for call in calls:
        function = dict(call["function"])
        with contextlib.suppress(ValueError):  # not JSON: the template gets the text
            function["arguments"] = json.loads(function["arguments"])
        native.append({**call, "function": function})
    return {**message, "tool_calls": native}


def _generic_history(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Calls and tool results as text turns: a call in the assistant's text, in the format it
    is asked to write; results as a user turn (consecutive results in one)."""
    out: list[dict[str, str]] = []
    from_tool = False
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        calls = [
            tool_call_text(c["function"]["name"], c["function"]["arguments"])
            for c in message.get("tool_calls") or ()
        ]
        if calls:
            content = "\n".join([content, *calls] if content else calls)
        if role == "tool":
            content = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1]["role"] == "user" and from_tool:
                out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + content}
                continue
            role = "user"
        from_tool = message["role"] == "tool"
        out.append({"role": role, "content": content})
    return out


def _tools_instruction(tools: list[dict[str, Any]], must_call: bool | str) -> str:
    functions = "\n".join(json.dumps(tool["function"], ensure_ascii=False) for tool in tools)
    example = (
        f"{TOOL_CALL_OPEN}{TOOL_CALL_NAME}<function name>{TOOL_CALL_ARGUMENTS}"
        f"<arguments as a JSON object>{TOOL_CALL_END}"
    )
    if isinstance(must_call, str):
        when = f"You must call the function {must_call}."
    elif must_call:
        when = "You must call at least one function."
    else:
        when = "Call a function when it helps; otherwise answer in text."
    return (
        f"You can call functions. They are, as JSON:\n{functions}\n\n"
        f"To call a function, write:\n{example}\n"
        f"one block per call, and stop after the calls: the results come in the next turn. "
        f"{when}"
    )


def _with_instruction(messages: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    """The instruction first in the system message (one is added when there is none)."""
    first = messages[0] if messages else None
    if first is not None and first["role"] in ("system", "developer"):
        merged = {"role": first["role"], "content": f"{instruction}\n\n{first['content']}"}
        return [merged, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


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
