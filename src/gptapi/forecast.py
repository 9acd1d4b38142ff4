"""When would a request finish? Learned from the requests this server is serving.

Admission asks before a request waits for anything, and again while it waits: if the forecast
finish is past the request's deadline, it is refused (503 ``deadline_unmeetable``) instead of
waiting minutes for a 504 while its prompt and tokens take cores from requests that can still
finish.

The model, measured on the requests being served (each under the load it met, which is the
load the next request meets), live, token by token, so that a burst on a fresh server is
forecast after the first seconds of its first requests rather than after they finish:

- ``interval_s``: seconds between two generated tokens of one request (one decode step, other
  requests' prompt chunks included): the mean over the last ``_GAP_WINDOW`` gaps;
- ``prefill_s_per_token``: seconds per computed prompt token from slot to first token, beyond
  one interval;
- ``length_share``: generated tokens / ``max_tokens`` of finished requests (clients ask for
  more than they use; 1 until one finishes);
- ``cached_share``: prompt tokens the prompt cache or a concurrent request supplied.

A request's *service* time (holding a slot) is then prefill + expected tokens x interval. Its
*start* comes from a list-scheduling walk: each busy slot frees when its request's forecast
service has elapsed, and each request queued ahead takes the earliest free slot for its own
service.

Until ``_MIN_GAPS`` gaps, one first token and ``_MIN_FINISHED`` finished requests are
measured (a burst on a fresh server), the service comes from the speeds the engine measured at
start-up (``engine/calibrate.py``), as a batch of ``batch`` requests like this one would take:
all their prompts, then one decode step of ``batch`` tokens per token (``Speeds``). Without
either, nothing is refused (no evidence).

With a slot free already, the forecast uses the fastest recent gap (a step with no prompt in
it), not the mean: a refusal needs evidence that even the best case misses the deadline.

Owned by the event loop thread (admission and the gateway), like ``Admission``: no locks.
"""

from __future__ import annotations

import heapq
from collections import deque

from gptapi.engine import Speeds

_MIN_GAPS = 8  # token gaps measured before anything is refused
_MIN_FINISHED = 3  # finished requests before measurements replace the start-up speeds
_WEIGHT = 0.2  # weight of the newest request in the per-request moving averages
_GAP_WINDOW = 256  # token gaps the interval is the mean of
_FAST_WINDOW = 32  # token gaps the fastest one is taken from


class Forecast:
    def __init__(self, speeds: Speeds | None = None) -> None:
        self.speeds = speeds  # measured at start-up: the forecast before any request is
        self.prefill_s_per_token: float | None = None
        self.length_share = 1.0
        self.cached_share: float | None = None
        self._gaps: deque[float] = deque(maxlen=_GAP_WINDOW)
        self.finished_count = 0

    @property
    def measured(self) -> bool:
        """Enough served here to forecast from what requests met, not from start-up speeds.
        With start-up speeds, only once requests have finished: the first gaps of a burst
        are biased by the prompts still being computed beside them (one 3.7 s step among
        twenty 0.45 s ones, measured on the heavy twin)."""
        enough_gaps = len(self._gaps) >= _MIN_GAPS and self.prefill_s_per_token is not None
        return enough_gaps and (self.speeds is None or self.finished_count >= _MIN_FINISHED)

    @property
    def ready(self) -> bool:
        return self.measured or self.speeds is not None

    @property
    def interval_s(self) -> float:
        return sum(self._gaps) / len(self._gaps) if self._gaps else 0.0

    @property
    def fastest_interval_s(self) -> float:
        recent = list(self._gaps)[-_FAST_WINDOW:]
        return min(recent) if recent else 0.0

    # --- learning, as tokens come --------------------------------------------------------

    def first_token(self, prompt_tokens: int, cached_tokens: int, seconds: float) -> None:
        """A request's first token came ``seconds`` after it got its slot."""
        computed = max(0, prompt_tokens - cached_tokens)
        if prompt_tokens:
            cached = cached_tokens / prompt_tokens
            self.cached_share = _ewma(self.cached_share, cached)
        if computed:
            # The first token needs the whole prompt and one step: the step is the interval.
            per_token = max(0.0, seconds - self.interval_s) / computed
            self.prefill_s_per_token = _ewma(self.prefill_s_per_token, per_token)

    def gap(self, seconds: float, tokens: int = 1) -> None:
        """``tokens`` more tokens of one request came ``seconds`` after its previous ones."""
        if tokens > 0:
            self._gaps.append(seconds / tokens)

    def finished(self, completion_tokens: int, max_tokens: int) -> None:
        self.finished_count += 1
        if max_tokens > 0:
            share = min(1.0, completion_tokens / max_tokens)
            self.length_share = (1 - _WEIGHT) * self.length_share + _WEIGHT * share

    # --- forecasting ---------------------------------------------------------------------

    def service_s(
        self, prompt_tokens: int, max_tokens: int, *, batch: int = 1, fastest: bool = False
    ) -> float:
        """Seconds a request would hold a slot: its prompt, then its expected tokens.
        ``batch``: requests expected to decode beside it (start-up speeds only); ``fastest``:
        the best case, for a request that holds a slot already."""
        computed = prompt_tokens * (1.0 - (self.cached_share or 0.0))
        tokens = max(1.0, max_tokens * self.length_share)
        if self.measured or self.speeds is None:
            interval = self.fastest_interval_s if fastest else self.interval_s
            return computed * (self.prefill_s_per_token or 0.0) + tokens * interval
        if fastest:
            return computed * self.speeds.prompt_token_s + tokens * self.speeds.decode_1_s
        batch = max(1, min(batch, self.speeds.slots))
        prompts_s = batch * computed * self.speeds.prompt_token_s
        return prompts_s + tokens * self.speeds.decode_s(batch)

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


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else (1 - _WEIGHT) * old + _WEIGHT * new
