"""Limits that depend on the running configuration, checked before any work is queued."""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, cast

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.strategies import FixedWindowRateLimiter, RateLimiter
from slowapi import Limiter
from slowapi.util import get_remote_address

from gptapi.auth import require_api_key
from gptapi.config import Settings
from gptapi.engine import SamplingParams
from gptapi.errors import InputTooLarge, InvalidRequest, RateLimited, TokenBudgetExhausted
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
        # Tokens per key (prompt + completion), in the same storage. A fixed window: a moving
        # window would store one entry per token.
        self.tokens: list[RateLimitItem] = parse_many(settings.token_rate_limit)
        self._token_counter = FixedWindowRateLimiter(self.limiter.limiter.storage)
        self._token_fallback = FixedWindowRateLimiter(self._fallback.limiter.storage)

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

    def take_tokens(self, key_id: str, cost: int) -> None:
        """Count a request's prompt tokens before it queues, or refuse it (429 with
        Retry-After) if they do not fit what the key has left in a token window."""
        for item in self.tokens:
            counter = self._tokens_counter()
            try:
                fits = counter.test(item, "tokens", key_id, cost=cost)
            except Exception as exc:
                self._storage_failed(exc)
                counter = self._token_fallback
                fits = counter.test(item, "tokens", key_id, cost=cost)
            if not fits:
                reset_at, remaining = counter.get_window_stats(item, "tokens", key_id)
                retry_after = max(1, math.ceil(reset_at - time.time()))
                raise TokenBudgetExhausted(
                    f"token rate limit exceeded for this key: {item} (prompt + completion); "
                    f"{max(0, remaining)} left, this prompt needs {cost}; retry in {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )
        self.count_tokens(key_id, cost)

    def count_tokens(self, key_id: str, cost: int) -> None:
        """Count tokens already spent (a completion): never refuses, may overdraw the window."""
        if cost <= 0:
            return
        for item in self.tokens:
            try:
                self._tokens_counter().hit(item, "tokens", key_id, cost=cost)
            except Exception as exc:
                self._storage_failed(exc)
                self._token_fallback.hit(item, "tokens", key_id, cost=cost)

    def _tokens_counter(self) -> FixedWindowRateLimiter:
        if time.monotonic() - self._storage_failed_at < _STORAGE_RETRY_S:
            return self._token_fallback
        return self._token_counter

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
    """One bound on the text a request puts into its prompt: all fields (all chat messages)
    together, before anything is tokenized."""
    sizes = {name: len(value) for name, value in fields.items() if value is not None}
    total = sum(sizes.values())
    if total > settings.max_prompt_chars:
        what = next(iter(sizes)) if len(sizes) == 1 else f"{', '.join(sizes)} together"
        raise InputTooLarge(
            f"{what} has {total} characters; the limit is {settings.max_prompt_chars}"
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
