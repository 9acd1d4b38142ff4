"""Limits that depend on the running configuration, checked before any work is queued."""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, cast

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.strategies import RateLimiter
from slowapi import Limiter
from slowapi.util import get_remote_address

from gptapi.auth import require_api_key
from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.errors import InputTooLarge, InvalidRequest, RateLimited
from gptapi.schemas import SamplingFields

log = logging.getLogger("gptapi.limits")
_STORAGE_RETRY_S = 30


class RateLimits:
    """Per-key limits on the generation routes (sustained and burst) and a per-IP limit on
    routes without a key, counted by slowapi's limiter in memory or in Redis (so a key's limit
    holds across workers and replicas).

    If Redis cannot be reached, counting falls back to this process's memory rather than failing
    requests: the queue, timeouts and memory guard still bound the load.
    """

    def __init__(self, settings: Settings) -> None:
        self.generation: list[RateLimitItem] = [
            *parse_many(settings.rate_limit),
            *parse_many(settings.rate_limit_burst),
        ]
        self.unauthenticated: list[RateLimitItem] = parse_many(settings.rate_limit_unauthenticated)
        self.storage_uri = settings.rate_limit_storage
        # A networked store is called from worker threads (it blocks), with short timeouts: a
        # Redis that stops answering must cost a request 0.5 s and the fallback, not a thread.
        self.remote = not self.storage_uri.startswith("memory://")
        self.limiter = Limiter(
            key_func=get_remote_address,
            storage_uri=settings.rate_limit_storage,
            # slowapi annotates these as str, but hands them to redis-py, which wants numbers.
            storage_options=cast(
                dict[str, str],
                {"socket_timeout": 0.5, "socket_connect_timeout": 0.5} if self.remote else {},
            ),
            strategy="moving-window",
        )
        self._fallback = Limiter(key_func=get_remote_address, strategy="moving-window")
        self._storage_failed_at = -math.inf

    def hit(self, key_id: str) -> dict[str, str]:
        """Count a generation request for a key; the X-RateLimit-* headers of its tightest
        limit, or RateLimited with Retry-After when any limit is exhausted."""
        return self._hit(self.generation, "generate", key_id, "this key")

    def hit_ip(self, ip: str) -> None:
        self._hit(self.unauthenticated, "ip", ip, "this client address")

    def _hit(
        self, items: list[RateLimitItem], namespace: str, who: str, whose: str
    ) -> dict[str, str]:
        strategy = self._strategy()
        tightest: dict[str, str] = {}
        least = math.inf
        for item in items:
            try:
                allowed = strategy.hit(item, namespace, who)
                reset_at, remaining = strategy.get_window_stats(item, namespace, who)
            except Exception as exc:  # storage down: count locally from now on, for a while
                self._storage_failed(exc)
                strategy = self._fallback.limiter
                allowed = strategy.hit(item, namespace, who)
                reset_at, remaining = strategy.get_window_stats(item, namespace, who)
            headers = {
                "X-RateLimit-Limit": str(item.amount),
                "X-RateLimit-Remaining": str(max(0, remaining)),
                "X-RateLimit-Reset": str(math.ceil(reset_at)),
            }
            if not allowed:
                retry_after = max(1, math.ceil(reset_at - time.time()))
                raise RateLimited(
                    f"rate limit exceeded for {whose}: {item}; retry in {retry_after} s",
                    headers={"Retry-After": str(retry_after), **headers},
                )
            if remaining < least:
                least, tightest = remaining, headers
        return tightest

    def _strategy(self) -> RateLimiter:
        if time.monotonic() - self._storage_failed_at < _STORAGE_RETRY_S:
            return self._fallback.limiter
        return self.limiter.limiter

    def _storage_failed(self, exc: Exception) -> None:
        self._storage_failed_at = time.monotonic()
        log.error(
            "rate-limit storage %s failed (%s); counting in this process for %d s",
            self.storage_uri.split("@")[-1],  # never log a password in the URI
            type(exc).__name__,
            _STORAGE_RETRY_S,
        )


def rate_limited_key(request: Request) -> str:
    """Authenticate, then count the request against the key's generation limits."""
    key_id = require_api_key(request)
    request.state.rate_limit_headers = request.app.state.rate_limits.hit(key_id)
    return key_id


GenerationKey = Annotated[str, Depends(rate_limited_key)]


def check_text_length(settings: Settings, **fields: str | None) -> None:
    for name, value in fields.items():
        if value is not None and len(value) > settings.max_prompt_chars:
            raise InputTooLarge(
                f"{name} has {len(value)} characters; the limit is {settings.max_prompt_chars}"
            )


def check_stop_strings(settings: Settings, stop: list[str]) -> None:
    if len(stop) > settings.max_stop_strings:
        raise InvalidRequest(
            f"stop: {len(stop)} strings; this server allows {settings.max_stop_strings}"
        )
    for s in stop:
        if len(s) > settings.max_stop_chars:
            raise InvalidRequest(
                f"stop: a string of {len(s)} characters; the limit is {settings.max_stop_chars}"
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
