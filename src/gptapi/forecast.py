"""When would a request finish? From start-up speeds, then from the requests this server served.

Admission asks before a request waits for anything, and again while it waits: if the forecast
finish is past the request's deadline, it is refused (503 ``deadline_unmeetable``) instead of
waiting minutes for a 504 while its prompt and tokens take cores from requests that can still
finish.

A request's *service* time (holding a slot) is forecast one of two ways:

- **start-up speeds** (``engine/calibrate.py``, then moved by each decode step served:
  ``Speeds.after_step``), until ``_MIN_FINISHED`` requests have finished
  (a burst on a fresh server): a batch of ``batch`` requests takes its own prompt and its
  batch-mates' (the mean prompt of the requests admitted now), then one decode step of
  ``batch`` tokens per token (``Speeds``);
- **measured**, from finished requests, each under the load it met (which is the load the next
  request meets): ``first_token_s``, slot to first token, a moving average of absolute times
  (in a batch every request waits for the batch's prompts, whatever its own length; never less
  than its own prompt at the start-up speed), then ``interval_s``, each request's own mean time
  between two tokens, averaged (never less than a step of ``batch`` at the current speeds);
  ``length_share`` (generated / ``max_tokens``: clients ask for
  more than they use) and ``cached_share`` (prompt tokens not computed).

Its *start* comes from a list-scheduling walk: each busy slot frees when its request's service
has elapsed, and each request queued ahead takes the earliest free slot for its own service.
Without speeds or finished requests nothing is refused (no evidence).

A request that holds a slot already is refused only if even the best case misses: its own
prompt and tokens at the start-up speeds of one sequence (or the fastest interval measured).

Why per finished request and not per token gap as they come: the first gaps of a burst
include the steps that compute the other requests' prompts (one 3.7 s gap among 0.45 s ones on
the heavy twin), and forecasts from them refused requests that then would have finished.

Owned by the event loop thread (admission and the gateway), like ``Admission``: no locks.
"""

from __future__ import annotations

import heapq
from collections import deque

from gptapi.engine import Speeds

_MIN_FINISHED = 3  # finished requests before measurements replace the start-up speeds
_WEIGHT = 0.2  # weight of the newest finished request in each moving average
_FAST_WINDOW = 32  # finished requests the fastest interval is taken from


class Forecast:
    def __init__(self, speeds: Speeds | None = None) -> None:
        self.speeds = speeds  # measured at start-up: the forecast before any request is
        self.finished_count = 0
        self.first_token_s = 0.0
        self.interval_s = 0.0
        self.length_share = 1.0
        self.cached_share = 0.0
        self._intervals: deque[float] = deque(maxlen=_FAST_WINDOW)

    @property
    def measured(self) -> bool:
        """Enough finished here to forecast from what requests met."""
        return self.finished_count >= _MIN_FINISHED

    @property
    def ready(self) -> bool:
        return self.measured or self.speeds is not None

    def finished(
        self,
        *,
        prompt_tokens: int,
        cached_tokens: int,
        completion_tokens: int,
        max_tokens: int,
        first_token_s: float,
        held_s: float,
    ) -> None:
        """Learn from a request that finished (times from the moment it held a slot)."""
        if completion_tokens < 1 or max_tokens < 1:
            return
        first = self.finished_count == 0
        self.finished_count += 1

        def average(old: float, new: float) -> float:
            return new if first else (1 - _WEIGHT) * old + _WEIGHT * new

        self.first_token_s = average(self.first_token_s, first_token_s)
        if completion_tokens > 1:
            interval = max(0.0, held_s - first_token_s) / (completion_tokens - 1)
            self._intervals.append(interval)
            self.interval_s = (
                interval if not self.interval_s else average(self.interval_s, interval)
            )
        self.length_share = average(self.length_share, min(1.0, completion_tokens / max_tokens))
        cached = cached_tokens / prompt_tokens if prompt_tokens else 0.0
        self.cached_share = average(self.cached_share, cached)

    def service_s(
        self,
        prompt_tokens: int,
        max_tokens: int,
        *,
        batch: int = 1,
        mates_prompt_tokens: float | None = None,
        fastest: bool = False,
    ) -> float:
        """Seconds a request would hold a slot: its prompt, then its expected tokens.
        ``batch``: requests expected to decode beside it (with start-up speeds, whose prompts
        it waits for: ``mates_prompt_tokens`` each, default like its own; once measured, the
        floor of a step); ``fastest``: the best case, for a request that holds a slot already."""
        computed = prompt_tokens * (1.0 - self.cached_share)
        tokens = max(1.0, max_tokens * self.length_share)
        speeds = self.speeds
        if fastest:
            if speeds is not None:
                return computed * speeds.prompt_token_s + tokens * speeds.decode_1_s
            return tokens * min(self._intervals, default=self.interval_s)
        if self.measured:
            own_prompt_s = computed * speeds.prompt_token_s if speeds is not None else 0.0
            interval = self.interval_s
            if speeds is not None:
                # Finished requests met the load of their time; a step now decodes ``batch``
                # tokens. Under random arrivals the load swings: forecasts from requests that
                # ran 1-4 at a time were 1.6x short for ones admitted beside 8 (twin, 0.05/s).
                interval = max(interval, speeds.decode_s(batch))
            return max(self.first_token_s, own_prompt_s) + (tokens - 1) * interval
        if speeds is None:
            return 0.0
        batch = max(1, min(batch, speeds.slots))
        # Its batch's prompts, not its own times the batch: a 29-token prompt among ~100-token
        # ones waited 17 s for its first token on the heavy twin, forecast 7 s from its own.
        mates = computed if mates_prompt_tokens is None else mates_prompt_tokens
        batch_prompt = computed + (batch - 1) * mates * (1.0 - self.cached_share)
        return batch_prompt * speeds.prompt_token_s + tokens * speeds.decode_s(batch)

    def start_s(
        self, busy_remaining_s: list[float], free_slots: int, ahead_s: list[float]
    ) -> float:
        """Seconds until a slot is free for a request with ``ahead_s`` (the forecast services
        of the requests served before it) in front: list scheduling over the slots."""
        free_at = [max(0.0, r) for r in busy_remaining_s] + [0.0] * free_slots
        if not free_at:
            return 0.0
        heapq.heapify(free_at)
        for service in ahead_s:
            heapq.heappush(free_at, heapq.heappop(free_at) + service)
        return free_at[0]
