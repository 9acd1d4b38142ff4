"""This machine's speeds, measured once when a context is made, before any request.

The deadline forecast (``gptapi/forecast.py``) needs them for a burst that reaches a fresh
server: nothing has been served yet, so nothing else says whether the 40th request of the burst
can finish in time. The step budget starts from them too instead of probing with small chunks.
The first call also pages the model's weights in (a memory-mapped file is read on first use), so
the first request does not pay for that. Cost measured at start-up: well under a second on the
embedded model, ~8.5 s on the 4B Q8_0 twin (most of it paging 3.9 GiB of weights in, which the
first request would otherwise pay). Runs on the thread that builds the context, before the
scheduler thread exists: one thread owns the context at a time.
"""

from __future__ import annotations

import time
from typing import Any

import llama_cpp

from gptapi.engine.base import EngineError, Speeds

_WARM_TOKENS = 16  # a first chunk that pages the weights in; not timed
_PROMPT_TOKENS = 128  # the timed prompt chunk
_FIRST_ID = 1000  # ordinary token ids (not control tokens); the values do not matter for speed


def measure_speeds(
    ctx: Any, memory: Any, batch: Any, *, slots: int, n_batch: int, n_vocab: int
) -> Speeds:
    def run(tokens: list[tuple[int, int]], logits_for_all: bool) -> float:
        """Decode (seq_id, pos) tokens as one batch; seconds taken."""
        batch.n_tokens = len(tokens)
        for i, (seq_id, pos) in enumerate(tokens):
            batch.token[i] = (_FIRST_ID + i) % n_vocab
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits_for_all or i == len(tokens) - 1
        started = time.perf_counter()
        ret = llama_cpp.llama_decode(ctx, batch)
        seconds = time.perf_counter() - started
        llama_cpp.llama_memory_clear(memory, True)
        if ret != 0:
            raise EngineError(f"llama_decode returned {ret} while measuring speeds")
        return seconds

    chunk = min(_PROMPT_TOKENS, n_batch)
    full = min(slots, n_batch)
    run([(0, p) for p in range(_WARM_TOKENS)], False)
    prompt_s = run([(0, p) for p in range(chunk)], False)
    decode_1 = run([(0, 0)], True)
    decode_full = run([(i, 0) for i in range(full)], True)
    return Speeds(
        prompt_token_s=prompt_s / chunk, decode_1_s=decode_1, decode_full_s=decode_full, slots=full
    )
