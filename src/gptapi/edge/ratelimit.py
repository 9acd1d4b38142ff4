"""Rate limits, all of them: per client address on open paths and for requests without a valid
key, per key after authentication (requests at the edge, ``RateLimit``; tokens per minute in the
gateway), counted by slowapi's limiter in memory or in Redis."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar, cast

from limits import RateLimitItem, parse_many
from limits.strategies import FixedWindowRateLimiter, RateLimiter
from slowapi import Limiter
from slowapi.util import get_remote_address
from starlette.types import ASGIApp, Receive, Scope, Send

from gptapi.config import Settings
from gptapi.edge.responses import render_error
from gptapi.errors import GptapiError, RateLimited, TokenBudgetExhausted
from gptapi.telemetry.memory import snapshot

log = logging.getLogger("gptapi.edge.ratelimit")
T = TypeVar("T")
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
        """A request to a route without a key (probes, docs, unknown paths)."""
        self._hit(self.unauthenticated, "ip", ip, "this client address")

    def hit_without_key(self, ip: str) -> None:
        """A request to a keyed route without a valid key: RateLimited once the address has
        spent its budget for those. Its own budget (of the same size): a client polling /ready
        does not spend it."""
        self._hit(
            self.unauthenticated, "refused", ip, "requests without a valid key from this address"
        )

    async def call(self, check: Callable[[str], T], who: str) -> T:
        """Run a check from the event loop: in a worker thread when the store is networked."""
        if self.remote:
            return await asyncio.to_thread(check, who)
        return check(who)

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


def client_ip(scope: Scope) -> str:
    # uvicorn has already replaced the peer with X-Forwarded-For's client when the proxy is
    # trusted (GPTAPI_FORWARDED_ALLOW_IPS); otherwise this is the socket's peer.
    client = scope.get("client")
    return client[0] if client else "unknown"


class RateLimit:
    """Every request rate limit, after authentication and before the body is read.

    - An open path (no key): counted per client address (GPTAPI_RATE_LIMIT_UNAUTHENTICATED).
    - Any other path (``Authentication`` has set its key id): counted against the key's own
      limits (GPTAPI_RATE_LIMIT, _BURST) whatever happens next, so a key's bad requests (400,
      405, 408, 413, 415, 422) count like its good ones.
    """

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        state = scope.setdefault("state", {})
        key_id: str | None = state.get("key_id")
        try:
            if key_id is None:
                await limits.call(limits.hit_ip, client_ip(scope))
            else:
                state["rate_limit_headers"] = await limits.call(limits.hit, key_id)
                # The request's memory snapshot starts here: refusals cost none. Cheap fields
                # now, PSS/USS as of the sampler's last reading (a fresh one walks every page).
                state["memory_start"] = await asyncio.to_thread(snapshot, fresh=False)
        except GptapiError as exc:
            await render_error(scope, receive, send, exc)
            return
        await self.app(scope, receive, send)
