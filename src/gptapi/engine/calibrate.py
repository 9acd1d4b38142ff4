"""This machine's speeds, measured once when a context is made, before any request.

The deadline forecast (``gptapi/forecast.py``) needs them for a burst that reaches a fresh
server: nothing has been served yet, so nothing else says whether the 40th request of the burst
can finish in time. The step budget starts from them too instead of probing with small chunks.
The first call also pages the model's weights in (a memory-mapped file is read on first use), so
the first request does not pay for that. Cost measured at start-up: well under a second on the
embedded model; on the 4B Q8_0 twin 7.5 s with the file in the page cache (5.4 s before the
decode steps were timed as served, three of each), more when 3.9 GiB of weights must be read
from disk, which the first request would otherwise pay. Runs on the thread that builds the
context, before the scheduler thread exists: one thread owns the context at a time.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import llama_cpp
import numpy as np

from gptapi.engine.base import EngineError, Speeds

_WARM_TOKENS = 16  # a first chunk that pages the weights in; not timed
_PROMPT_TOKENS = 128  # the timed prompt chunk; then the context every decode step attends to
_DECODE_STEPS = 3  # decode steps timed per count: the median (one sample swung 402-926 ms)
_FIRST_ID = 1000  # ordinary token ids (not control tokens); the values do not matter for speed


def measure_speeds(
    ctx: Any, memory: Any, batch: Any, *, slots: int, n_batch: int, n_vocab: int, n_ctx: int
) -> Speeds:
    """Decode steps are timed as the scheduler serves them: every sequence holds a prompt
    (the timed chunk, shared by all: llama_memory_seq_cp marks cells, it copies nothing in a
    unified cache), and each step's logits are read and the next token picked (greedy, as the
    task endpoints' default) for every sequence. One bare step at position 0 took 0.40-0.45 s
    for 8 sequences on the heavy twin where served steps took 0.49-0.70 s."""

    def run(tokens: list[tuple[int, int]], logits_for_all: bool) -> float:
        """Decode (seq_id, pos) tokens as one batch and pick a token from each logits row;
        seconds taken."""
        batch.n_tokens = len(tokens)
        for i, (seq_id, pos) in enumerate(tokens):
            batch.token[i] = (_FIRST_ID + i) % n_vocab
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits_for_all or i == len(tokens) - 1
        started = time.perf_counter()
        ret = llama_cpp.llama_decode(ctx, batch)
        if ret != 0:
            llama_cpp.llama_memory_clear(memory, True)
            raise EngineError(f"llama_decode returned {ret} while measuring speeds")
        for i in range(len(tokens)) if logits_for_all else ():
            row = llama_cpp.llama_get_logits_ith(ctx, i)
            int(np.argmax(np.ctypeslib.as_array(row, shape=(n_vocab,))))
        return time.perf_counter() - started

    full = min(slots, n_batch)
    # The prompt and the decode steps must fit one slot's context.
    chunk = max(1, min(_PROMPT_TOKENS, n_batch, n_ctx - 2 * _DECODE_STEPS - 1))
    try:
        run([(0, p) for p in range(min(_WARM_TOKENS, chunk))], False)
        llama_cpp.llama_memory_clear(memory, True)
        prompt_s = run([(0, p) for p in range(chunk)], False)
        # The whole sequence (-1, -1): with one KV buffer per slot (GPTAPI_KV_UNIFIED=false)
        # llama.cpp copies between buffers only whole, and aborts on a range.
        for seq_id in range(1, full):
            llama_cpp.llama_memory_seq_cp(memory, 0, seq_id, -1, -1)
        pos = chunk
        decode_full = []
        for _ in range(_DECODE_STEPS):
            decode_full.append(run([(i, pos) for i in range(full)], True))
            pos += 1
        decode_1 = []
        for _ in range(_DECODE_STEPS):
            decode_1.append(run([(0, pos)], True))
            pos += 1
    finally:
        llama_cpp.llama_memory_clear(memory, True)
    return Speeds(
        prompt_token_s=prompt_s / chunk,
        decode_1_s=statistics.median(decode_1),
        decode_full_s=statistics.median(decode_full),
        slots=full,
    )
