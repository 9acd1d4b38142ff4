"""Limits that depend on the running configuration, checked before any work is queued."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from slowapi import Limiter
from slowapi.util import get_remote_address

from gptapi.auth import require_api_key
from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.errors import InputTooLarge, InvalidRequest, RateLimited
from gptapi.schemas import SamplingFields


class RateLimits:
    """Per-key limits on the generation routes, counted in slowapi's storage (memory or Redis,
    so a key's limit holds across workers and replicas)."""

    def __init__(self, settings: Settings) -> None:
        self.items: list[RateLimitItem] = parse_many(settings.rate_limit)
        self.limiter = Limiter(
            key_func=get_remote_address,
            storage_uri=settings.rate_limit_storage,
            strategy="moving-window",
        )

    def hit(self, key_id: str) -> None:
        for item in self.items:
            if not self.limiter.limiter.hit(item, "generate", key_id):
                reset_at, _remaining = self.limiter.limiter.get_window_stats(
                    item, "generate", key_id
                )
                retry_after = max(1, math.ceil(reset_at - time.time()))
                raise RateLimited(
                    f"rate limit exceeded for this key: {item}; retry in {retry_after} s",
                    headers={
                        "Retry-After": str(retry_after),
                        "X-RateLimit-Limit": str(item.amount),
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(math.ceil(reset_at)),
                    },
                )


def rate_limited_key(request: Request) -> str:
    """Authenticate, then count the request against the key's generation limit."""
    key_id = require_api_key(request)
    request.app.state.rate_limits.hit(key_id)
    return key_id


GenerationKey = Annotated[str, Depends(rate_limited_key)]


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
