from dataclasses import replace
from pathlib import Path

from gptapi import prompts
from gptapi.engine import ModelInfo

# The shape of Gemma 3's instruct template (user/model turns, BOS first).
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

BASE = ModelInfo(
    id="base",
    path=Path("m.gguf"),
    size_bytes=1,
    origin="test",
    n_ctx=2048,
    chat_template=None,
    bos_token="<bos>",
    eos_token="<eos>",
)
INSTRUCT = replace(BASE, id="instruct", chat_template=GEMMA_TEMPLATE)


def test_base_model_gets_completion_prompts_with_stops() -> None:
    answer = prompts.answer_prompt(BASE, "What is the code?", "The code is 4417.")
    assert answer.text == "Context: The code is 4417.\nQuestion: What is the code?\nAnswer:"
    assert answer.stop == ("\n",)
    assert prompts.answer_prompt(BASE, "Capital of France?", None).text.startswith("Q: ")
    summary = prompts.summarize_prompt(BASE, "Long text.", 12)
    assert summary.text.endswith("Summary in at most 12 words:")
    assert prompts.generate_prompt(BASE, "Once upon").text == "Once upon"


def test_instruct_model_gets_its_chat_template_without_a_second_bos() -> None:
    task = prompts.answer_prompt(INSTRUCT, "What is the code?", "The code is 4417.")
    assert task.text.startswith("<start_of_turn>user\n")
    assert "The code is 4417." in task.text
    assert task.text.endswith("<start_of_turn>model\n")
    assert "<bos>" not in task.text
    assert task.stop == ()


def test_generate_on_instruct_model_wraps_the_prompt_as_a_user_turn() -> None:
    task = prompts.generate_prompt(INSTRUCT, "Write a haiku")
    assert task.text == "<start_of_turn>user\nWrite a haiku<end_of_turn>\n<start_of_turn>model\n"
