"""Prompt KV that outlives its request: a later request starts from the longest cached prefix.

An entry is one sequence's KV state copied out of the llama.cpp context into host RAM
(``llama_state_seq_get_data``) when the sequence ends, or when a prompt that will outgrow the
sliding window finishes prefilling. A hit copies it into the new sequence's own cells
(``llama_state_seq_set_data``) and trims what the new prompt does not share. Why host RAM and
not extra sequence ids resident in the KV cache (docs/performance.md, "Prompt cache"):

- RAM is exactly the budget: entries are anonymous mappings of a known size, never KV cells
  that active requests need. An entry cannot make a request wait or fail; it is only ever copied.
- Resident entries would need one more sequence id each, and llama.cpp sizes the sliding-window
  cache per sequence id (Gemma 3 4B: +116 MiB per id whatever the entry's length), and every
  resident cell is scanned by attention in every decode step of the unified cache.
- The copy is cheap next to what it saves: ~1 ms for 5 MiB (300 tokens, embedded model) against
  ~1 s of prefill; on the heavy model (twin) 8 ms for 350 tokens against 28 s.

Owned by the scheduler thread, like the context: no locks. Counters are plain ints read by
metrics from other threads.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
from collections import OrderedDict
from dataclasses import dataclass

import llama_cpp
import numpy as np

log = logging.getLogger("gptapi.prompt_cache")

# Shorter prefixes cost little to recompute and would crowd the cache with entries.
MIN_ENTRY_TOKENS = 16
# Lookups compare the prompt with every entry (numpy, ~2 us each); this bounds that scan.
MAX_ENTRIES = 256


def _pages(size: int) -> int:
    return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


@dataclass(eq=False)
class CacheEntry:
    scope: str  # only sequences of the same scope (a key, or a group of keys) may use it
    tokens: np.ndarray  # int32: the tokens whose KV the state holds, positions 0..len-1
    # First position the sliding-window layers still hold. 0: every prefix of the entry is
    # usable. Otherwise only prefixes long enough that the window the next position attends
    # to (its n_swa - 1 predecessors) starts at or after it.
    pos_min: int
    state: mmap.mmap  # private anonymous mapping: returned to the OS when the entry goes
    state_size: int

    @property
    def nbytes(self) -> int:
        return len(self.state) + self.tokens.nbytes


@dataclass(frozen=True)
class PromptCacheStats:
    budget_bytes: int
    entries: int
    bytes: int
    hit_tokens: int  # prompt tokens restored from entries instead of computed
    miss_tokens: int  # prompt tokens of new sequences the cache did not have
    evictions: int
    restore_failures: int


class PromptCache:
    def __init__(self, ctx: object, memory: object, *, budget_bytes: int, n_swa: int) -> None:
        self._ctx = ctx
        self._memory = memory
        self.budget_bytes = budget_bytes
        self._n_swa = n_swa
        self._entries: OrderedDict[int, CacheEntry] = OrderedDict()  # LRU first
        self.bytes = 0
        self.hit_tokens = 0
        self.miss_tokens = 0
        self.evictions = 0
        self.restore_failures = 0

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    def stats(self) -> PromptCacheStats:
        return PromptCacheStats(
            budget_bytes=self.budget_bytes,
            entries=len(self._entries),
            bytes=self.bytes,
            hit_tokens=self.hit_tokens,
            miss_tokens=self.miss_tokens,
            evictions=self.evictions,
            restore_failures=self.restore_failures,
        )

    # --- lookup and restore -----------------------------------------------------------------

    def _usable(self, entry: CacheEntry, prompt: np.ndarray) -> int:
        # The last prompt token is always computed: it gives the request its first logits.
        limit = min(len(entry.tokens), len(prompt) - 1)
        if limit < MIN_ENTRY_TOKENS:
            return 0
        mismatch = np.flatnonzero(entry.tokens[:limit] != prompt[:limit])
        n = int(mismatch[0]) if mismatch.size else limit
        if n < MIN_ENTRY_TOKENS:
            return 0
        if entry.pos_min > 0 and n < entry.pos_min + self._n_swa - 1:
            # Position n attends to the n_swa - 1 positions before it in the window layers.
            return 0
        return n

    def lookup(self, prompt: list[int], scope: str) -> tuple[CacheEntry | None, int]:
        """The entry of ``scope`` with the longest usable prefix of ``prompt``, and that length.
        Entries of other scopes are invisible: a hit (``cached_tokens``, a shorter TTFT) would
        tell a client how much of another key's prompt it guessed."""
        if not self._entries:
            return None, 0
        tokens = np.asarray(prompt, dtype=np.int32)
        best: CacheEntry | None = None
        best_len = 0
        for entry in self._entries.values():
            if entry.scope != scope:
                continue
            n = self._usable(entry, tokens)
            if n > best_len:
                best, best_len = entry, n
        return best, best_len

    def restore(self, entry: CacheEntry, seq_id: int, n_tokens: int) -> bool:
        """Put the entry's first ``n_tokens`` into the (empty) sequence ``seq_id``. False (and
        the sequence left empty) when llama.cpp could not take it: then it is computed."""
        data = (ctypes.c_uint8 * entry.state_size).from_buffer(entry.state)
        try:
            read = llama_cpp.llama_state_seq_set_data(self._ctx, data, entry.state_size, seq_id)
        finally:
            del data  # the mapping cannot be closed while a ctypes view of it exists
        trimmed = bool(read) and (
            n_tokens == len(entry.tokens)
            or llama_cpp.llama_memory_seq_rm(self._memory, seq_id, n_tokens, -1)
        )
        # What the next position attends to in the window layers must all be there.
        needed_from = max(0, n_tokens - self._n_swa + 1) if self._n_swa else 0
        held_from = int(llama_cpp.llama_memory_seq_pos_min(self._memory, seq_id))
        if not trimmed or held_from > needed_from:
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
            self.restore_failures += 1
            log.warning("prompt cache: restoring %d tokens failed; computing them", n_tokens)
            return False
        self._entries.move_to_end(id(entry))
        return True

    def count(self, prompt_tokens: int, hit_tokens: int) -> None:
        """A new sequence started: ``hit_tokens`` of its prompt came from the cache (the rest
        was computed, or shared with a running sequence)."""
        self.hit_tokens += hit_tokens
        self.miss_tokens += prompt_tokens - hit_tokens

    # --- saving and eviction ----------------------------------------------------------------

    def save(self, seq_id: int, tokens: list[int], scope: str) -> None:
        """Copy the KV of sequence ``seq_id``, which holds exactly ``tokens``, into an entry
        that only sequences of ``scope`` may use."""
        if not self.enabled or len(tokens) < MIN_ENTRY_TOKENS:
            return
        pos_min = max(0, int(llama_cpp.llama_memory_seq_pos_min(self._memory, seq_id)))
        if self._n_swa:
            # The window layers may still hold older cells (llama.cpp reuses them lazily), but
            # the saved state leaves out every cell the window masks from the last position.
            pos_min = max(pos_min, len(tokens) - self._n_swa)
        if pos_min > 0 and len(tokens) < pos_min + self._n_swa - 1:
            return  # no prefix of it would be usable
        arr = np.asarray(tokens, dtype=np.int32)
        for key, entry in self._entries.items():
            if entry.scope == scope and _covers(entry.tokens, entry.pos_min, arr, pos_min):
                self._entries.move_to_end(key)
                return
        size = int(llama_cpp.llama_state_seq_get_size(self._ctx, seq_id))
        need = _pages(size) + arr.nbytes
        if size <= 0 or need > self.budget_bytes:
            return
        # Room first, so the mapped bytes never pass the budget even for a moment: entries the
        # new one serves entirely, then the least recently used.
        for key, entry in list(self._entries.items()):
            if entry.scope == scope and _covers(arr, pos_min, entry.tokens, entry.pos_min):
                self._drop(key)
        while self._entries and (
            self.bytes + need > self.budget_bytes or len(self._entries) >= MAX_ENTRIES
        ):
            self._drop(next(iter(self._entries)))
            self.evictions += 1
        # Private: counted as the process's anonymous memory (RssAnon), like the KV cache.
        state = mmap.mmap(-1, _pages(size), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        data = (ctypes.c_uint8 * size).from_buffer(state)
        try:
            written = llama_cpp.llama_state_seq_get_data(self._ctx, data, size, seq_id)
        finally:
            del data
        if written != size:
            state.close()
            log.warning(
                "prompt cache: saving %d tokens failed (%d/%d bytes)", len(arr), written, size
            )
            return
        entry = CacheEntry(scope=scope, tokens=arr, pos_min=pos_min, state=state, state_size=size)
        self._entries[id(entry)] = entry
        self.bytes += entry.nbytes

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.nbytes
        entry.state.close()

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)


def _covers(tokens: np.ndarray, pos_min: int, other: np.ndarray, other_pos_min: int) -> bool:
    """Whether a state of ``tokens`` serves every prefix a state of ``other`` would serve."""
    n = len(other)
    if len(tokens) < n or not np.array_equal(tokens[:n], other):
        return False
    return pos_min == 0 or (other_pos_min > 0 and pos_min <= other_pos_min)
