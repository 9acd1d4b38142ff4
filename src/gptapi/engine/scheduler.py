"""Continuous batching: one llama.cpp context, one thread, many sequences per ``llama_decode``.

Each step puts the next token of every decoding sequence and prompt chunks of newly admitted
sequences into one batch, decodes it once, samples each sequence with its own sampler, and frees
finished or cancelled sequences' KV cells before the next step (keeping a copy in the prompt
cache). A new sequence starts from the longest prompt prefix it finds in another active
sequence or in the prompt cache. The thread owns the context: nothing else touches it, so no
lock is needed around llama.cpp.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

from gptapi.engine.base import (
    Delta,
    EngineError,
    EngineOverloaded,
    FinishReason,
    SamplingParams,
    TokenLogprob,
)
from gptapi.engine.calibrate import measure_speeds
from gptapi.engine.constrained import Candidates, Constrained
from gptapi.engine.model import LlamaModel, set_field
from gptapi.engine.output import OutputText
from gptapi.engine.prompt_cache import PromptCache
from gptapi.engine.prompt_order import prompt_order
from gptapi.engine.sampling import make_sampler
from gptapi.engine.step_budget import StepBudget

log = logging.getLogger("gptapi.scheduler")

Emit = Callable[[Delta | EngineError], None]
_IDLE_POLL_S = 0.1
# Arrivals closer than this to the previous one join the same first step (see _gather).
_GATHER_GAP_S = 0.01
_GATHER_MAX_S = 0.1
_KV_TYPES = {
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
}


@dataclass(eq=False)
class Sequence:
    prompt: list[int]
    params: SamplingParams
    emit: Emit
    # Sequences share KV (the prompt cache, concurrent prefixes) only within one scope.
    scope: str = ""
    out: OutputText = field(init=False)
    seq_id: int = -1
    fed: int = 0  # prompt tokens already in the KV cache
    fed_before_step: int = 0  # ``fed`` when the current batch began: what is really in memory
    pos: int = 0  # position of the next token fed
    next_token: int | None = None  # sampled, to be fed in the next step
    generated: list[int] = field(default_factory=list)  # generated tokens fed (in the KV cache)
    n_out: int = 0
    cached: int = 0  # prompt tokens not computed: from the prompt cache or another sequence
    batch_index: int = -1  # where this sequence's logits are in the current batch
    admitted_at: float = 0.0  # when it got a slot (time.monotonic): prompt order's aging
    sampler: Any = None
    grammar: Constrained | None = None  # structured output: the grammar its tokens must follow
    # Set from the event loop; read by the scheduler thread at the start of each step.
    cancelled: bool = False

    @property
    def remaining_prompt(self) -> int:
        return len(self.prompt) - self.fed

    def __post_init__(self) -> None:
        self.out = OutputText(
            self.params.stop, skip_leading_whitespace=self.params.skip_leading_whitespace
        )


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


class Scheduler:
    def __init__(
        self,
        model: LlamaModel,
        *,
        slots: int,
        n_ctx_per_slot: int,
        n_threads: int,
        n_batch: int,
        kv_unified: bool = True,
        kv_cache_type: str = "f16",
        share_prefixes: bool = True,
        prompt_cache_bytes: int = 0,
        step_target_s: float = 0.0,
        unstreamed_step_target_s: float = 0.0,
        name: str = "scheduler",
    ) -> None:
        self.model = model
        self.slots = slots
        self.n_batch = n_batch
        self.step_budget = StepBudget(step_target_s, unstreamed_step_target_s)
        self._step_tokens = (0, 0)  # (decoding, prompt) tokens in the batch being decoded
        # Sharing KV cells between sequences needs them in one stream (the unified cache).
        self.share_prefixes = share_prefixes and kv_unified and slots > 1
        self.prompt_tokens_shared = 0  # read by tests and metrics; written by this thread only
        self.n_swa = int(llama_cpp.llama_model_n_swa(model.ptr))  # 0: no sliding-window layers
        params = llama_cpp.llama_context_default_params()
        set_field(params, "n_ctx", slots * n_ctx_per_slot)
        set_field(params, "n_batch", n_batch)
        set_field(params, "n_ubatch", min(n_batch, 512))
        set_field(params, "n_seq_max", slots)
        # Each step wants logits for at most one token per sequence. Left at 0, llama.cpp sizes
        # the compute buffer for a whole ubatch of logits (512 x 262k vocab = 512 MiB here).
        set_field(params, "n_outputs_max", slots)
        set_field(params, "n_outputs_max_per_seq", 1)
        set_field(params, "n_threads", n_threads)
        set_field(params, "n_threads_batch", n_threads)
        # Unified: one KV buffer shared by all slots; attention over one stream was much faster
        # than over one stream per slot with short prompts (47 -> 69 tok/s at 10 users here).
        # Every slot still gets its n_ctx_per_slot cells: admission bounds each request to that
        # and the buffer holds slots x n_ctx_per_slot. Either way RAM is fixed up front.
        set_field(params, "kv_unified", kv_unified)
        # Sliding-window layers keep only their window, not the full context: far less RAM.
        set_field(params, "swa_full", False)
        # A quantized V cache needs flash attention, which llama.cpp's "auto" turns on for CPU.
        set_field(params, "type_k", _KV_TYPES[kv_cache_type])
        set_field(params, "type_v", _KV_TYPES[kv_cache_type])
        self.ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not self.ctx:
            raise EngineError(f"llama.cpp could not create a context of {params.n_ctx} tokens")
        self.n_ctx_per_slot = n_ctx_per_slot
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.prompt_cache = PromptCache(
            self.ctx, self.memory, budget_bytes=prompt_cache_bytes, n_swa=self.n_swa
        )
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(model.vocab))
        self._candidates: Candidates | None = None  # structured output's vocabulary buffer
        # A token may belong to every slot's sequence at once (a shared prompt prefix).
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, slots)
        self.speeds = measure_speeds(
            self.ctx,
            self.memory,
            self.batch,
            slots=slots,
            n_batch=n_batch,
            n_vocab=self.n_vocab,
            n_ctx=n_ctx_per_slot,
        )
        self.step_budget.start_from(self.speeds)
        self._free_ids = list(range(slots))
        self._active: list[Sequence] = []
        self._inbox: queue.SimpleQueue[Sequence] = queue.SimpleQueue()
        self._waiting: list[Sequence] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        self._inbox.put(seq)

    # --- scheduler thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._take_new(block=not self._active)
                self._drop_cancelled()
                if self._active:
                    self._step()
            except Exception as exc:  # keep serving: fail what was running, not the process
                log.exception("scheduler step failed; failing %d sequences", len(self._active))
                for seq in list(self._active):
                    # The client gets no exception text (paths, internals): the log has it.
                    self._finish_with_error(seq, f"generation failed ({type(exc).__name__})")
        for seq in self._active + self._waiting:
            self._release(seq, keep=False)
            seq.emit(Delta("", seq.n_out, "cancelled", seq.cached))

    def _take_new(self, block: bool) -> None:
        if block and not self._waiting:
            try:
                self._waiting.append(self._inbox.get(timeout=_IDLE_POLL_S))
            except queue.Empty:
                return
            self._gather()
        while True:
            try:
                self._waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        while self._waiting and self._free_ids:
            seq = self._waiting.pop(0)
            if seq.cancelled:
                seq.emit(Delta("", 0, "cancelled"))
                continue
            seq.seq_id = self._free_ids.pop(0)
            seq.sampler = make_sampler(seq.params, self.n_vocab)
            if seq.params.grammar is not None:
                try:
                    seq.grammar = Constrained(
                        self.model.vocab,
                        seq.params.grammar,
                        trigger=seq.params.grammar_trigger,
                        piece=self.model.piece,
                    )
                except ValueError as exc:
                    self._free_ids.append(seq.seq_id)
                    seq.seq_id = -1
                    self._free_samplers(seq)
                    seq.emit(EngineError(f"structured output: {exc}"))
                    continue
            seq.admitted_at = time.monotonic()
            self._active.append(seq)

    def _gather(self) -> None:
        """An idle engine just got a request: take the ones arriving right behind it too, so a
        burst shares one prefill step. Started alone, the first would hold the cores for a whole
        prompt step while the rest are still being parsed, and they would start a step later."""
        deadline = time.monotonic() + _GATHER_MAX_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._waiting.append(self._inbox.get(timeout=min(_GATHER_GAP_S, left)))
            except queue.Empty:
                return

    def _drop_cancelled(self) -> None:
        # Cancelled mid-prefill (client gone, timed out) too: what it computed is kept in the
        # prompt cache, so a retry resumes from there.
        for seq in [s for s in self._active if s.cancelled]:
            self._release(seq)
            seq.emit(Delta("", seq.n_out, "cancelled", seq.cached))

    def _release(self, seq: Sequence, *, keep: bool = True) -> None:
        """Free the sequence's KV cells, sampler and slot id; ``keep``: save its KV in the
        prompt cache first (only between steps, when the cache holds what was fed)."""
        if seq in self._active:
            self._active.remove(seq)
        if seq.seq_id >= 0:
            if keep and self.prompt_cache.enabled:
                tokens = seq.prompt[: seq.fed] + seq.generated
                if len(tokens) == seq.pos:
                    self._save(seq, tokens)
            llama_cpp.llama_memory_seq_rm(self.memory, seq.seq_id, -1, -1)
            self._free_ids.append(seq.seq_id)
            seq.seq_id = -1
        self._free_samplers(seq)

    @staticmethod
    def _free_samplers(seq: Sequence) -> None:
        if seq.sampler is not None:
            llama_cpp.llama_sampler_free(seq.sampler)
            seq.sampler = None
        if seq.grammar is not None:
            seq.grammar.free()
            seq.grammar = None

    def _save(self, seq: Sequence, tokens: list[int]) -> None:
        try:
            self.prompt_cache.save(seq.seq_id, tokens, seq.scope)
        except Exception:  # e.g. no memory for the mapping: a cache entry is never worth more
            log.exception("prompt cache: could not save %d tokens", len(tokens))

    def _finish_with_error(
        self, seq: Sequence, message: str, error: type[EngineError] = EngineError
    ) -> None:
        self._release(seq, keep=False)  # what its cells hold cannot be trusted
        seq.emit(error(message))

    def _fill_batch(self) -> list[Sequence]:
        batch, n = self.batch, 0
        in_batch: list[Sequence] = []

        def put(token: int, seq: Sequence, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = logits
            seq.pos += 1
            n += 1

        streaming = False
        for seq in self._active:
            if seq.next_token is not None:
                seq.batch_index = n
                put(seq.next_token, seq, True)
                seq.generated.append(seq.next_token)
                seq.next_token = None
                in_batch.append(seq)
                streaming = streaming or seq.params.streamed
        # Prompts fill what the decoding tokens leave, the one finishing soonest first
        # (engine.prompt_order), up to what keeps the step near its time target (the streams'
        # or, if none decodes, the unstreamed requests'); a long prompt is spread over steps.
        n_decoding = n
        prompt_room = self.step_budget.prompt_tokens(
            n_decoding, self.n_batch - n_decoding, streaming=streaming
        )
        if self.share_prefixes:
            for seq in self._active:
                seq.fed_before_step = seq.fed
        # Sequences starting in this batch whose batch tokens others may share -> (positions
        # already in memory, which seq_cp copies, then the batch index of each next position).
        fresh: dict[Sequence, tuple[int, list[int]]] = {}
        per_token = self.step_budget.prompt_token_s
        pending = [s for s in self._active if s.fed < len(s.prompt)]
        for seq in prompt_order(pending, time.monotonic(), per_token and 1 / per_token):
            budget = prompt_room - (n - n_decoding)
            if budget <= 0:
                break
            if seq.fed == 0:
                self._start(seq, fresh)
            first = n
            chunk = seq.prompt[seq.fed : seq.fed + budget]
            for token in chunk:
                put(token, seq, False)
            if seq in fresh:
                fresh[seq][1].extend(range(first, n))
            seq.fed += len(chunk)
            if seq.fed == len(seq.prompt):
                batch.logits[n - 1] = True
                seq.batch_index = n - 1
            else:
                seq.batch_index = -1
            in_batch.append(seq)
        batch.n_tokens = n
        self._step_tokens = (n_decoding, n - n_decoding)
        return in_batch

    def _start(self, seq: Sequence, fresh: dict[Sequence, tuple[int, list[int]]]) -> None:
        """Start a new sequence from the longest prompt prefix already computed: in another
        active sequence (shared) or in the prompt cache (copied in)."""
        entry, cached_len = self.prompt_cache.lookup(seq.prompt, seq.scope)
        donor, shared_len = self._best_donor(seq, fresh) if self.share_prefixes else (None, 0)
        restored = False
        if entry is not None and cached_len > shared_len:
            try:
                restored = self.prompt_cache.restore(entry, seq.seq_id, cached_len)
            except Exception:  # never worth failing the request: compute the prompt instead
                log.exception("prompt cache: could not restore %d tokens", cached_len)
                llama_cpp.llama_memory_seq_rm(self.memory, seq.seq_id, -1, -1)
        self.prompt_cache.count(len(seq.prompt), cached_len if restored else 0)
        if restored:
            seq.fed = seq.pos = seq.fed_before_step = seq.cached = cached_len
            # Its cells are in memory now: a newcomer in this step may copy them and share
            # the tokens it computes next in the batch.
            fresh[seq] = (cached_len, [])
        elif donor is not None:
            self._share_prefix(seq, donor, shared_len, fresh)
        else:
            fresh[seq] = (0, [])

    def _best_donor(
        self, seq: Sequence, fresh: dict[Sequence, tuple[int, list[int]]]
    ) -> tuple[Sequence | None, int]:
        """The active sequence of ``seq``'s scope with the longest prompt prefix in common with
        it. Other scopes never donate: a shared prefix shows in ``cached_tokens`` and TTFT."""
        if self.n_swa and len(seq.prompt) + seq.params.max_tokens > self.n_swa:
            # Sliding-window cache: it only reclaims cells one sequence holds, and it is sized
            # for each sequence's own window. A shared cell must stay inside the window of a
            # sequence holding it, or it would occupy that cache for nothing.
            return None, 0
        best: Sequence | None = None
        best_len = 0
        for other in self._active:
            if other is seq or other.seq_id < 0 or other.scope != seq.scope:
                continue
            if other in fresh:
                in_memory, indices = fresh[other]
                if in_memory > 0 and not self._cache_starts_at_zero(other):
                    # Restored without its first window positions: a shorter copy would miss
                    # positions its continuation attends to.
                    continue
                available = in_memory + len(indices)
            elif other.fed_before_step > 0 and self._cache_starts_at_zero(other):
                available = other.fed_before_step
            else:
                continue
            # The last prompt token stays each sequence's own: it carries that sequence's logits.
            limit = min(available, len(seq.prompt) - 1, len(other.prompt) - 1)
            length = _common_prefix(seq.prompt, other.prompt, limit)
            if length > best_len:
                best, best_len = other, length
        return best, best_len

    def _share_prefix(
        self,
        seq: Sequence,
        best: Sequence,
        best_len: int,
        fresh: dict[Sequence, tuple[int, list[int]]],
    ) -> None:
        """Take over ``best``'s first ``best_len`` prompt tokens, so they are computed once.
        Tokens in memory: their cells are marked as this one's too (llama_memory_seq_cp: no
        copy in a unified cache). Tokens ``best`` computes in this batch: they enter the batch
        once, carrying both sequence ids (llama.cpp lets sequences share batch tokens only when
        what they hold in memory is identical, which the seq_cp makes it)."""
        seq.fed = seq.pos = seq.cached = best_len
        self.prompt_tokens_shared += best_len
        in_memory, indices = fresh.get(best, (best_len, []))
        copied = min(in_memory, best_len)
        if copied > 0:
            llama_cpp.llama_memory_seq_cp(self.memory, best.seq_id, seq.seq_id, 0, copied)
        shared = indices[: best_len - copied]
        for index in shared:
            k = self.batch.n_seq_id[index]
            self.batch.seq_id[index][k] = seq.seq_id
            self.batch.n_seq_id[index] = k + 1
        fresh[seq] = (copied, shared)

    def _cache_starts_at_zero(self, seq: Sequence) -> bool:
        # A sliding-window cache drops a long sequence's first positions: nothing to share then.
        return int(llama_cpp.llama_memory_seq_pos_min(self.memory, seq.seq_id)) == 0

    def _step(self) -> None:
        in_batch = self._fill_batch()
        if not in_batch:
            return
        started = time.perf_counter()
        ret = llama_cpp.llama_decode(self.ctx, self.batch)
        if ret != 0:
            self._on_decode_failure(ret, in_batch)
            return
        self.step_budget.observe(*self._step_tokens, time.perf_counter() - started)
        active = len(self._active)
        for seq in in_batch:
            if seq.batch_index < 0:
                # Prompt not done yet: tell the request how far it got (stream keepalives).
                seq.emit(Delta("", 0, None, seq.cached, prompt_done=seq.fed))
                continue
            if seq.n_out == 0 and self._outgrows_window(seq):
                # Saved at its end, its first positions would be gone from the sliding-window
                # layers: keep the prompt now, while every window position is still there.
                self._save(seq, seq.prompt)
            try:
                token = self._sample(seq)
            except ValueError as exc:  # a grammar with no way on: this sequence only
                self._finish_with_error(seq, f"structured output: {exc}")
                continue
            self._advance(seq, token, self._logprobs(seq, token))
            if seq.grammar is not None and seq.grammar.active:
                # Stop strings apply up to the trigger (included), not inside the calls.
                seq.out.end_stops()
        # The step as served, for the deadline forecast. A new frozen object each time: the
        # event loop reads the reference (engine.speeds()) and never sees half an update.
        # Not a step in which requests ended: saving their state to the prompt cache made the
        # step that ended a wave of 8 on the twin take ~2x a decode step, and the forecast
        # then refused the next wave's followers after 80 s.
        if len(self._active) == active:
            self.speeds = self.speeds.after_step(*self._step_tokens, time.perf_counter() - started)

    def _outgrows_window(self, seq: Sequence) -> bool:
        return (
            self.prompt_cache.enabled
            and self.n_swa > 0
            and len(seq.prompt) + seq.params.max_tokens > self.n_swa
        )

    def _sample(self, seq: Sequence) -> int:
        if seq.grammar is not None:
            if self._candidates is None:  # 12 bytes per vocabulary entry, kept once allocated
                self._candidates = Candidates(self.n_vocab)
            logits = llama_cpp.llama_get_logits_ith(self.ctx, seq.batch_index)
            values = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
            return seq.grammar.choose(values, seq.sampler, self._candidates)
        if seq.sampler is None:
            logits = llama_cpp.llama_get_logits_ith(self.ctx, seq.batch_index)
            return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())
        return int(llama_cpp.llama_sampler_sample(seq.sampler, self.ctx, seq.batch_index))

    def _logprobs(self, seq: Sequence, token: int) -> tuple[TokenLogprob, ...]:
        """The token's log probability and the top alternatives, when the request asked (read
        before the next decode overwrites the logits). ~1 ms over 262k logits in numpy."""
        k = seq.params.logprobs
        if k is None or self.model.is_end_of_generation(token):
            return ()
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(self.ctx, seq.batch_index), shape=(self.n_vocab,)
        )
        top = float(logits.max())
        log_total = top + float(np.log(np.exp(logits - top, dtype=np.float64).sum()))
        best: list[tuple[bytes, float]] = []
        if k > 0:
            ids = np.argpartition(-logits, k)[:k]
            ids = ids[np.argsort(-logits[ids])]
            best = [(self.model.piece(int(i)), float(logits[i]) - log_total) for i in ids]
        entry = TokenLogprob(self.model.piece(token), float(logits[token]) - log_total, tuple(best))
        return (entry,)

    def _advance(self, seq: Sequence, token: int, logprobs: tuple[TokenLogprob, ...] = ()) -> None:
        finish: FinishReason | None = None
        text = ""
        if self.model.is_end_of_generation(token):
            finish = "stop"
        else:
            seq.n_out += 1
            text = seq.out.feed(self.model.piece(token))
            if seq.out.stopped:
                finish = "stop"
            elif seq.n_out >= seq.params.max_tokens:
                finish = "length"
            else:
                seq.next_token = token
        if finish is not None:
            text += seq.out.finish()
            self._release(seq)
        seq.emit(Delta(text, seq.n_out, finish, seq.cached, logprobs=logprobs))

    def _on_decode_failure(self, ret: int, in_batch: list[Sequence]) -> None:
        if ret in (1, -1):
            # The KV state was rolled back: fail the newcomers (or the newest) and retry the
            # rest next step. Every decoding sequence that stays must re-feed its token.
            prefilling = [s for s in in_batch if s.n_out == 0]
            victims = prefilling or [in_batch[-1]]
            log.error("llama_decode returned %d; failing %d sequence(s)", ret, len(victims))
            for seq in in_batch:
                if seq not in victims:
                    self._rewind(seq)
            for seq in victims:
                if ret == 1:  # no room in the KV cache for this batch: load, retryable
                    self._finish_with_error(
                        seq, "no room in the KV cache for this request now", EngineOverloaded
                    )
                else:
                    self._finish_with_error(seq, f"llama_decode failed ({ret}) for this request")
            return
        # Aborted or fatal: what was processed stays in the cache; nothing in it can be trusted.
        log.error(
            "llama_decode returned %d; failing the %d sequences in the batch", ret, len(in_batch)
        )
        for seq in in_batch:
            self._finish_with_error(seq, f"llama_decode failed ({ret}) for this request")

    def _rewind(self, seq: Sequence) -> None:
        # Undo what _fill_batch did for this sequence (the decode never happened).
        if seq.n_out > 0:
            seq.pos -= 1
            seq.next_token = self._last_token_of(seq)
            seq.generated.pop()
        else:
            seq.pos = 0
            seq.fed = 0

    def _last_token_of(self, seq: Sequence) -> int:
        return int(self.batch.token[seq.batch_index])

    # --- owner thread --------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once the scheduler thread has ended (closed, or died of a bug)."""
        return self._thread.is_alive()

    def close(self, timeout: float = 30) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("scheduler thread did not stop in %.0f s; leaking its context", timeout)
            return
        self.prompt_cache.clear()
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
