"""Admission: who gets a slot next, and who is refused at once.

``slots`` requests decode at once; up to ``max_queue`` more wait. The queue is fair between API
keys: keys are served in turn (round-robin), so a key that sends 60 requests delays another
key's request by at most one request per busy key, not by 60. Within a key, the shortest prompt
goes first: a request whose prompt is a document makes every step it is computed in slower,
so short requests admitted behind it would all wait for it (measured on mixed-long, issue 27);
a request is overtaken at most ``slots`` times (about one slot-full of shorter requests), so a
long one is never starved, and fewer when its deadline leaves less room (``allow_overtakes``):
a promise made at admission (it will finish in time) is not broken by requests admitted after
it.

A key may hold at most ``max_per_key`` requests decoding or queued;
beyond that it gets 429, and a full or draining server 503, both before any work (tokenizing
included) is done.

``Retry-After`` comes from the measured service rate: completions per second over the last
``_RATE_WINDOW`` completions, so it follows the model and load actually being served.

``start_s`` forecasts when a queued ticket would get its slot (``forecast.py``): the gateway
refuses at once a request that would finish past its deadline.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gptapi.errors import DeadlineUnmeetable, KeyBusy, ServerBusy
from gptapi.forecast import Forecast

_RATE_WINDOW = 32  # completions the service rate is measured over
_MAX_RETRY_AFTER_S = 3600


@dataclass(eq=False)
class Ticket:
    """One request's place: granted a slot at once, or waiting in its key's queue."""

    key: str
    granted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    enqueued: float = field(default_factory=time.perf_counter)
    acquired: float | None = None
    left: bool = False
    prompt_tokens: int = 0  # known once tokenized (a moment after entering); 0 until then
    overtaken: int = 0  # shorter requests of its key admitted before it
    overtake_budget: int = 0  # how often it may be overtaken: set on entering, lowered by slack
    max_tokens: int = 0  # known with prompt_tokens; 0 until then

    @property
    def holds_slot(self) -> bool:
        return self.acquired is not None


class Admission:
    def __init__(self, slots: int, max_queue: int, max_per_key: int | None = None) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.max_per_key = max_per_key or slots + max_queue
        self.busy = 0
        self.draining = False
        # Keys with waiting tickets, in serving order: the first key is served next, then
        # moves to the end if it still has tickets waiting.
        self._queues: OrderedDict[str, deque[Ticket]] = OrderedDict()
        self._queued = 0
        self._per_key: Counter[str] = Counter()  # decoding + queued, per key
        self._completions: deque[float] = deque(maxlen=_RATE_WINDOW)
        self._hold_s = 1.0  # moving average of slot hold time: the rate before any is measured
        self.max_overtaken = slots  # how often a long request may be passed by shorter ones
        self.forecast = Forecast()
        self._holding: set[Ticket] = set()

    @property
    def queued(self) -> int:
        return self._queued

    def in_flight(self, key: str) -> int:
        return self._per_key[key]

    # --- Retry-After ----------------------------------------------------------------------

    def service_rate(self) -> float:
        """Completions per second: measured over the last completions while busy, else
        ``slots`` per average hold time."""
        done = self._completions
        if len(done) >= 2 and done[-1] > done[0]:
            measured = (len(done) - 1) / (done[-1] - done[0])
            # A quiet spell since the last completion means the rate is lower than it was.
            quiet = time.perf_counter() - done[-1]
            return measured if quiet <= 1 / measured else 1 / quiet
        return self.slots / self._hold_s

    def retry_after_s(self, ahead: int | None = None) -> int:
        """Seconds until ``ahead`` requests (default: the whole queue) have been served."""
        waiting = self._queued if ahead is None else ahead
        seconds = (waiting + 1) / self.service_rate()
        return min(_MAX_RETRY_AFTER_S, max(1, math.ceil(seconds)))

    def mean_prompt_tokens(self) -> float | None:
        """The mean prompt of the requests holding a slot or queued (tokenized ones): a
        request's batch-mates, whose prompts it waits for."""
        known = [t.prompt_tokens for t in self._holding if t.max_tokens]
        known += [t.prompt_tokens for q in self._queues.values() for t in q if t.max_tokens]
        return sum(known) / len(known) if known else None

    def start_s(self, ticket: Ticket, batch: int, overtaken: int = 0) -> float:
        """Forecast seconds until the ticket holds a slot (0 if it does): the busy slots free
        as their requests' services elapse, and the requests served before it (``position``,
        plus ``overtaken`` more) each take the earliest free slot. Services are forecast now,
        for ``batch`` requests decoding together, so the first requests of a burst (checked
        when they were alone) are seen as the full batch will make them."""
        return self._slot_walk(ticket, batch, self.mean_prompt_tokens())(overtaken)

    def _slot_walk(self, ticket: Ticket, batch: int, mates: float | None) -> Callable[[int], float]:
        """``start_s`` for 0, 1, 2... more requests served before the ticket (the services
        are forecast once, with ``mates``: ``mean_prompt_tokens``)."""
        if ticket.holds_slot:
            return lambda overtaken: 0.0

        def service(t: Ticket) -> float:
            # Not tokenized yet (a moment after entering): like this request.
            prompt, max_tokens = (t.prompt_tokens, t.max_tokens) if t.max_tokens else own
            return self.forecast.service_s(
                prompt, max_tokens, batch=batch, mates_prompt_tokens=mates
            )

        own = (ticket.prompt_tokens, ticket.max_tokens)
        now = time.perf_counter()
        busy = [service(t) - (now - t.acquired) for t in self._holding if t.acquired is not None]
        queued = [service(t) for q in self._queues.values() for t in q if t is not ticket]
        ahead = self.position(ticket) - 1
        mean_queued = sum(queued) / len(queued) if queued else service(ticket)
        # Busy slots whose request ran past its forecast still need at least one more step.
        floor = self.forecast.interval_s
        busy = [max(floor, r) for r in busy]
        free = self.slots - len(busy)
        return lambda overtaken: self.forecast.start_s(
            busy, free, [mean_queued] * (ahead + overtaken)
        )

    def finish_s(self, ticket: Ticket, left_s: float, tolerance: float = 1.0) -> float | None:
        """Forecast seconds until the ticket's request finishes (None: no evidence yet), or
        raise DeadlineUnmeetable if that is more than ``left_s`` x ``tolerance``. A queued
        ticket's overtakes are then limited to what its slack absorbs."""
        forecast = self.forecast
        if not forecast.ready:
            return None
        prompt, max_tokens = ticket.prompt_tokens, ticket.max_tokens
        # Requests that will decode beside it: every one admitted or queued, up to the slots.
        batch = min(self.slots, self.busy + self._queued)
        mates = self.mean_prompt_tokens()
        walk = self._slot_walk(ticket, batch, mates)
        start_s = walk(0)
        service_s = forecast.service_s(prompt, max_tokens, batch=batch, mates_prompt_tokens=mates)
        expected_s = start_s + service_s
        # Holding a slot already: refused only if even its own work alone, at the fastest
        # pace seen, is late (a refusal needs evidence that the best case is late).
        best_s = (
            forecast.service_s(prompt, max_tokens, batch=batch, fastest=True)
            if ticket.holds_slot
            else expected_s
        )
        if best_s > left_s * tolerance:
            raise DeadlineUnmeetable(
                f"this request would finish in about {expected_s:.0f} s (a slot in "
                f"{start_s:.0f} s, then prompt {prompt} tokens, max_tokens {max_tokens}: "
                f"{service_s:.0f} s of its own work at the current load), past its "
                f"{left_s:.0f} s limit; retry later, or ask for fewer tokens",
                min(_MAX_RETRY_AFTER_S, max(1, math.ceil(best_s - left_s))),
            )
        # Shorter requests admitted later may pass it only as often as it still fits then:
        # the walk, not a slot's average turn, since a burst's requests start together and
        # one more ahead may cost it a whole round of slots (refused at 100 s on the twin).
        limit_s = left_s * min(1.0, tolerance)
        more = 0
        while (
            not ticket.holds_slot
            and ticket.overtaken + more < ticket.overtake_budget
            and walk(more + 1) + service_s <= limit_s
        ):
            more += 1
        self.allow_overtakes(ticket, more)
        return expected_s

    # --- entering and leaving -------------------------------------------------------------

    def enter(self, key: str) -> Ticket:
        """Take a slot or a place in the queue now, or raise: ServerBusy (draining, queue full)
        or KeyBusy (this key's cap). Never waits; pair it with ``leave``."""
        if self.draining:
            raise ServerBusy("server is shutting down", self.retry_after_s(), reason="draining")
        free = self.busy < self.slots and not self._queued
        if not free and self._queued >= self.max_queue:
            raise ServerBusy(
                f"server busy: {self.busy} requests decoding and {self._queued} queued "
                f"(limit {self.max_queue}); retry later",
                self.retry_after_s(),
            )
        if self._per_key[key] >= self.max_per_key:
            # Its next slot comes after one of its own requests completes; with several keys
            # waiting, every other key is served in between.
            raise KeyBusy(
                f"this key has {self._per_key[key]} requests decoding or queued, the most this "
                f"server allows one key (GPTAPI_MAX_INFLIGHT_PER_KEY={self.max_per_key})",
                self.retry_after_s(len(self._queues)),
            )
        ticket = Ticket(key, overtake_budget=self.max_overtaken)
        if free:
            self.busy += 1
            self._grant(ticket)
        else:
            self._queues.setdefault(key, deque()).append(ticket)
            self._queued += 1
        self._per_key[key] += 1
        return ticket

    async def wait(self, ticket: Ticket, seconds: float | None) -> bool:
        """Wait up to ``seconds`` for the ticket's slot; True once it holds one.
        Raises ServerBusy if the server starts draining meanwhile."""
        if not ticket.granted.done():
            await asyncio.wait({ticket.granted}, timeout=seconds)
        if ticket.granted.done():
            ticket.granted.result()  # raises what drain() set
            return True
        return False

    def position(self, ticket: Ticket) -> int:
        """1 = served next. Keys take turns from the first waiting key on, so a ticket is
        served after the tickets of its round and of earlier rounds; within its key, after the
        shorter prompts (an estimate: requests arriving later may still overtake it)."""
        own = self._queues.get(ticket.key)
        if own is None or ticket not in own:
            return 0
        # This ticket is served in round `index`.
        index = _serving_order(own).index(ticket)
        keys = list(self._queues)
        mine = keys.index(ticket.key)
        before = index
        for rank, key in enumerate(keys):
            if rank != mine:
                before += min(len(self._queues[key]), index + (1 if rank < mine else 0))
        return before + 1

    def leave(self, ticket: Ticket) -> float:
        """The request is done (finished, failed, refused later, cancelled): give up its slot or
        its place. Returns the seconds it held a slot (0 if it never got one)."""
        if ticket.left:
            return 0.0
        ticket.left = True
        self._per_key[ticket.key] -= 1
        if self._per_key[ticket.key] <= 0:
            del self._per_key[ticket.key]
        if not ticket.holds_slot:
            self._dequeue(ticket)
            if not ticket.granted.done():
                ticket.granted.cancel()
            elif not ticket.granted.cancelled():
                ticket.granted.exception()  # drained: retrieved, so asyncio does not warn
            return 0.0
        now = time.perf_counter()
        assert ticket.acquired is not None
        self._holding.discard(ticket)
        held = now - ticket.acquired
        self._hold_s = 0.8 * self._hold_s + 0.2 * held
        self._completions.append(now)
        if not self._hand_over():
            self.busy -= 1
        return held

    def drain(self) -> None:
        """Stop admitting: queued requests get 503 now, new ones at once."""
        self.draining = True
        for tickets in self._queues.values():
            for ticket in tickets:
                busy = ServerBusy(
                    "server is shutting down", self.retry_after_s(), reason="draining"
                )
                ticket.granted.set_exception(busy)
        self._queues.clear()
        self._queued = 0

    def _grant(self, ticket: Ticket) -> None:
        ticket.acquired = time.perf_counter()
        self._holding.add(ticket)
        ticket.granted.set_result(None)

    def _hand_over(self) -> bool:
        """Give the freed slot to the next key in turn; False if nobody is waiting."""
        while self._queues:
            key, tickets = next(iter(self._queues.items()))
            ticket = self._next_of_key(tickets)
            self._queued -= 1
            if tickets:
                self._queues.move_to_end(key)
            else:
                del self._queues[key]
            self._grant(ticket)
            return True
        return False

    def _next_of_key(self, tickets: deque[Ticket]) -> Ticket:
        """Remove and return the key's next ticket (``_choose``)."""
        chosen = _choose(tickets, {t: t.overtaken for t in tickets})
        for ticket in tickets:
            if ticket is chosen:
                break
            ticket.overtaken += 1
        tickets.remove(chosen)
        return chosen

    def allow_overtakes(self, ticket: Ticket, more: int) -> None:
        """A queued ticket may be overtaken ``more`` times from now (never more than before):
        a promise made at admission (it will finish in time) is not broken by requests
        admitted after it."""
        if not ticket.holds_slot:
            ticket.overtake_budget = min(ticket.overtake_budget, ticket.overtaken + more)

    def _dequeue(self, ticket: Ticket) -> None:
        tickets = self._queues.get(ticket.key)
        if tickets is not None and ticket in tickets:
            tickets.remove(ticket)
            self._queued -= 1
            if not tickets:
                del self._queues[ticket.key]


def _choose(waiting: Iterable[Ticket], overtaken: dict[Ticket, int]) -> Ticket:
    """The next of a key's waiting tickets: the first whose overtakes are used up, else the
    shortest prompt (ties: arrival order)."""
    waiting = list(waiting)
    due = next((t for t in waiting if overtaken[t] >= t.overtake_budget), None)
    return due or min(waiting, key=lambda t: t.prompt_tokens)


def _serving_order(tickets: Iterable[Ticket]) -> list[Ticket]:
    """The order ``_next_of_key`` would serve these tickets in if nobody else arrived."""
    waiting = list(tickets)
    overtaken = {t: t.overtaken for t in waiting}
    order: list[Ticket] = []
    while waiting:
        chosen = _choose(waiting, overtaken)
        for ticket in waiting[: waiting.index(chosen)]:
            overtaken[ticket] += 1
        waiting.remove(chosen)
        order.append(chosen)
    return order
