"""Grammar-constrained sampling for one sequence (structured output), on the scheduler thread.

A grammar pass over Gemma's 262k-token vocabulary costs milliseconds per token, so it is done
the way llama.cpp's common sampler does it: pick the token as if unconstrained (argmax, or the
sequence's sampler chain), ask the grammar about that one token, and only when the grammar
rejects it, apply the grammar to the whole vocabulary and pick again. Most tokens of a JSON
answer are ones the model would have chosen anyway, so most steps cost one single-token check.
docs/performance.md ("Structured output") has the measured cost.

A lazy grammar (tool calls in ``tool_choice: auto``: the model may answer in text or call a
function) has a trigger text: the output is free until it writes the trigger, and the grammar
constrains what follows. The trigger is watched here, not by llama.cpp's lazy sampler: that one
replays the text after the trigger into the grammar and aborts the process when the text does
not fit it. Here a token that would write the trigger with more text after it is not taken (the
next choice is), so the grammar always starts exactly where the trigger ends.

The candidates buffer (12 bytes per vocabulary entry: 3 MiB for 262k) is owned by the scheduler
and reused by every constrained sequence: a fixed size, counted in docs/sizing.md.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import Any

import llama_cpp
import numpy as np

log = logging.getLogger("gptapi.engine")

# llama_token_data: {int32 id; float logit; float p}
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
# Greedy, after a rejection: how many of the likeliest tokens to try before the full pass.
_TOP_FIRST = 1024


class Candidates:
    """A reusable llama_token_data array over the whole vocabulary, and one of a single token."""

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self.all = np.zeros(n_vocab, dtype=TOKEN_DATA)
        self.one = np.zeros(1, dtype=TOKEN_DATA)
        self.few = np.zeros(_TOP_FIRST, dtype=TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)

    def over(self, logits: np.ndarray) -> llama_cpp.llama_token_data_array:
        """The whole vocabulary with these logits, in id order (samplers reorder it in place)."""
        self.all["id"] = self._ids
        self.all["logit"] = logits
        self.all["p"] = 0.0
        return _array(self.all, self.n_vocab)

    def single(self, token: int, logit: float) -> llama_cpp.llama_token_data_array:
        self.one[0] = (token, logit, 0.0)
        return _array(self.one, 1)


def _array(data: np.ndarray, size: int) -> llama_cpp.llama_token_data_array:
    return llama_cpp.llama_token_data_array(
        data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
        size=size,
        selected=-1,
        sorted=False,
    )


def new_grammar(vocab: Any, grammar: str) -> Any:
    """A llama.cpp grammar sampler; ValueError when llama.cpp cannot parse the grammar."""
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        raise ValueError("llama.cpp could not parse the grammar")
    return sampler


class Constrained:
    """One sequence's grammar; counts how often the unconstrained choice was rejected."""

    def __init__(
        self,
        vocab: Any,
        grammar: str,
        *,
        trigger: str | None = None,
        piece: Callable[[int], bytes] | None = None,
    ) -> None:
        self.vocab, self.grammar = vocab, grammar
        # Lazy: no grammar until the output ends with the trigger; `seen` keeps the output's
        # last bytes, enough to find a trigger written across tokens.
        self.trigger = trigger.encode() if trigger else None
        self.piece = piece
        self.seen = b""
        self.sampler = None if self.trigger else new_grammar(vocab, grammar)
        self.steps = 0
        self.rejections = 0  # the unconstrained choice was not allowed
        self.top_hits = 0  # ... and the likeliest allowed token was among the top few
        self.full_passes = 0  # ... else: the grammar over the whole vocabulary

    @property
    def active(self) -> bool:
        """Whether the grammar applies (a lazy one: once the trigger was written)."""
        return self.sampler is not None

    def choose(self, logits: np.ndarray, chain: Any, candidates: Candidates) -> int:
        """The next token: the unconstrained choice if the grammar allows it, else the choice
        among what the grammar allows. Accepts it into the grammar and the chain."""
        if self.sampler is None:
            return self._free_until_trigger(logits, chain, candidates)
        self.steps += 1
        token = self._pick(candidates.over(logits) if chain is not None else None, logits, chain)
        check = candidates.single(token, float(logits[token]))
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(check))
        if not np.isfinite(candidates.one["logit"][0]):
            self.rejections += 1
            best = self._best_allowed_of_top(logits, candidates) if chain is None else None
            token = best if best is not None else self._choose_over_all(logits, chain, candidates)
        llama_cpp.llama_sampler_accept(self.sampler, token)
        if chain is not None:
            llama_cpp.llama_sampler_accept(chain, token)
        return token

    def _free_until_trigger(self, logits: np.ndarray, chain: Any, candidates: Candidates) -> int:
        assert self.trigger is not None and self.piece is not None
        banned: np.ndarray | None = None
        while True:
            values = logits if banned is None else banned
            array = candidates.over(values) if chain is not None else None
            token = self._pick(array, values, chain)
            seen = self.seen + self.piece(token)
            at = seen.find(self.trigger)
            if at < 0 or at + len(self.trigger) == len(seen):
                break
            # The trigger with text after it in one token: the grammar would start late.
            if banned is None:
                banned = logits.copy()  # the context's logits stay as the model gave them
            banned[token] = -np.inf
        if at >= 0:
            self.sampler = new_grammar(self.vocab, self.grammar)
        self.seen = seen[-len(self.trigger) :]
        if chain is not None:
            llama_cpp.llama_sampler_accept(chain, token)
        return token

    def _best_allowed_of_top(self, logits: np.ndarray, candidates: Candidates) -> int | None:
        """Greedy: the likeliest token the grammar allows is, most often, among the few
        likeliest overall. Checking the top 1024 (~1 ms) instead of 262k (~26 ms) gives the same
        token whenever one of them is allowed; None sends the step to the full pass."""
        k = min(_TOP_FIRST, logits.size - 1)  # a vocabulary may be smaller
        top = np.argpartition(-logits, k)[:k]
        top = top[np.argsort(-logits[top])]
        few = candidates.few[:k]
        few["id"] = top
        few["logit"] = logits[top]
        few["p"] = 0.0
        array = _array(few, k)
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))
        allowed = np.flatnonzero(np.isfinite(few["logit"]))
        if allowed.size == 0:
            return None
        self.top_hits += 1
        return int(few["id"][allowed[0]])  # the array keeps its order: highest logit first

    def _choose_over_all(self, logits: np.ndarray, chain: Any, candidates: Candidates) -> int:
        self.full_passes += 1
        array = candidates.over(logits)
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))
        if not np.isfinite(candidates.all["logit"].max()):
            # Accepting a token the grammar rejects aborts the process inside llama.cpp.
            raise ValueError("the grammar allows no token here")
        return self._pick(array, candidates.all["logit"], chain, allowed=candidates)

    @staticmethod
    def _pick(
        array: llama_cpp.llama_token_data_array | None,
        logits: np.ndarray,
        chain: Any,
        allowed: Candidates | None = None,
    ) -> int:
        if chain is None:
            if allowed is None:
                return int(logits.argmax())
            # The grammar set rejected tokens to -inf in place; ids are still in order.
            return int(allowed.all["id"][int(allowed.all["logit"].argmax())])
        assert array is not None
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        data = np.ctypeslib.as_array(
            ctypes.cast(array.data, ctypes.POINTER(ctypes.c_uint8)),
            shape=(array.size * TOKEN_DATA.itemsize,),
        ).view(TOKEN_DATA)
        return int(data["id"][array.selected])

    def free(self) -> None:
        if self.steps:
            log.debug(
                "structured output: %d tokens, %d unconstrained choices rejected, %d of those "
                "found in the top %d, %d full-vocabulary passes",
                self.steps, self.rejections, self.top_hits, _TOP_FIRST, self.full_passes,
            )  # fmt: skip
            self.steps = 0
        if self.sampler is not None:
            llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None
