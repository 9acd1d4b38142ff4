"""Limits that depend on the running configuration, checked before any work is queued."""

from __future__ import annotations

from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.errors import InputTooLarge, InvalidRequest
from gptapi.schemas import SamplingFields


def check_text_length(settings: Settings, **fields: str | None) -> None:
    for name, value in fields.items():
        if value is not None and len(value) > settings.max_prompt_chars:
            raise InputTooLarge(
                f"{name} has {len(value)} characters; the limit is {settings.max_prompt_chars}"
            )


def sampling_params(
    settings: Settings,
    body: SamplingFields,
    stop: tuple[str, ...] = (),
    *,
    skip_leading_whitespace: bool = False,
) -> SamplingParams:
    if body.max_tokens is not None and body.max_tokens > settings.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens: {body.max_tokens} is above this server's limit of "
            f"{settings.max_tokens_limit}"
        )
    return SamplingParams(
        max_tokens=body.max_tokens or min(settings.default_max_tokens, settings.max_tokens_limit),
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=stop,
        seed=body.seed,
        skip_leading_whitespace=skip_leading_whitespace,
    )
