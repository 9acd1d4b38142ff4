"""Which prompts a step computes first: the one that finishes soonest.

Prompt chunks fill what a step's decoding tokens leave. Filled in arrival order, a 20-token
question waits behind whole documents that came a moment earlier (measured on the heavy twin:
~60 s of TTFT for a short request behind three ~270-token prompts; issue 27). Shortest
remaining prompt first finishes the most requests soonest (SRPT minimises the mean wait);
aging keeps a long document from being starved by a stream of short ones: every second a prompt
has waited counts as the prompt tokens this machine computes in a second, so after waiting
about as long as it takes to compute, a document goes ahead of any newcomer.

How it meets the rest: key fairness is decided before a request gets a slot (admission); this
orders only the prompts already holding slots. Prefix sharing and the prompt cache act first
(a prompt's remaining tokens are what they did not cover once it started); a newcomer whose
prefix another prompt is computing in the same step still shares it, whichever goes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

# Before the prompt speed is measured: a 2-core CPU's order of magnitude for the heavy model.
DEFAULT_TOKENS_PER_S = 50.0


class Prompted(Protocol):
    @property
    def remaining_prompt(self) -> int: ...

    @property
    def admitted_at(self) -> float: ...


P = TypeVar("P", bound=Prompted)


def prompt_order(pending: Sequence[P], now: float, tokens_per_s: float | None) -> list[P]:
    """``pending`` (prompts not done), the one to compute first first. Ties keep arrival order."""
    rate = tokens_per_s or DEFAULT_TOKENS_PER_S
    return sorted(pending, key=lambda p: p.remaining_prompt - (now - p.admitted_at) * rate)
