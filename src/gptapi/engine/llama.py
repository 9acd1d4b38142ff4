"""The two llama.cpp engines and the factory that builds one from settings.

- ``batched`` (default): one context whose scheduler decodes every slot's sequence in one batch.
- ``pool``: several one-slot contexts over the same mmap'd weights, kept for comparison. Its
  width is capped at the thread budget: llama.cpp threads spin-wait, so more decode threads than
  cores was seen to cut decode speed 5-10x.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import suppress

import llama_cpp

from gptapi.config import Settings
from gptapi.engine.base import (
    Delta,
    EngineError,
    ModelInfo,
    Prompt,
    PromptStats,
    SamplingParams,
    Speeds,
)
from gptapi.engine.constrained import new_grammar
from gptapi.engine.model import LlamaModel
from gptapi.engine.scheduler import Scheduler, Sequence
from gptapi.modelfile import inspect_gguf, resolve_model

log = logging.getLogger("gptapi.engine")


class LlamaEngine:
    """Dispatches each request to the least-loaded scheduler and streams its deltas back."""

    def __init__(self, model: LlamaModel, schedulers: list[Scheduler]) -> None:
        self._model = model
        self._schedulers = schedulers
        self._load = [0] * len(schedulers)  # touched only on the event loop
        meta = model.summary.metadata
        name = meta.get("general.name")
        template = meta.get("tokenizer.chat_template")
        self._info = ModelInfo(
            id=name if isinstance(name, str) and name else model.path.stem,
            path=model.path,
            size_bytes=model.summary.actual_size,
            origin=model.source.origin.value,
            n_ctx=min(s.n_ctx_per_slot for s in schedulers),
            chat_template=template if isinstance(template, str) and template else None,
            bos_token=model.bos_text,
            eos_token=model.eos_text,
            control_texts=model.control_texts(),
            add_bos=model.add_bos,
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def slots(self) -> int:
        return sum(s.slots for s in self._schedulers)

    def prompt_stats(self) -> PromptStats:
        # Read from the event loop while scheduler threads write: plain ints, each read whole.
        caches = [s.prompt_cache.stats() for s in self._schedulers]
        return PromptStats(
            shared_tokens=sum(s.prompt_tokens_shared for s in self._schedulers),
            cache_budget_bytes=sum(c.budget_bytes for c in caches),
            cache_entries=sum(c.entries for c in caches),
            cache_bytes=sum(c.bytes for c in caches),
            cache_hit_tokens=sum(c.hit_tokens for c in caches),
            cache_miss_tokens=sum(c.miss_tokens for c in caches),
            cache_evictions=sum(c.evictions for c in caches),
        )

    def tokenize(self, prompt: Prompt) -> list[int]:
        return self._model.tokenize(prompt)

    def check_grammar(self, grammar: str) -> None:
        # Reads only the vocabulary, like tokenizing: safe beside a running decode.
        llama_cpp.llama_sampler_free(new_grammar(self._model.vocab, grammar))

    def pieces(self, tokens: list[int]) -> list[bytes]:
        n_vocab = self._model.n_vocab
        for token in tokens:
            if not 0 <= token < n_vocab:
                raise ValueError(f"token {token} is outside the vocabulary (0..{n_vocab - 1})")
        return [self._model.piece(token) for token in tokens]

    async def generate(
        self, tokens: list[int], params: SamplingParams, *, scope: str = ""
    ) -> AsyncGenerator[Delta, None]:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Delta | EngineError] = asyncio.Queue()

        def emit(item: Delta | EngineError) -> None:
            # RuntimeError: the loop is gone (shutdown) and nobody waits for this sequence.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(inbox.put_nowait, item)

        index = min(range(len(self._schedulers)), key=self._load.__getitem__)
        seq = Sequence(tokens, params, emit, scope)
        self._load[index] += 1
        self._schedulers[index].submit(seq)
        try:
            while True:
                item = await inbox.get()
                if isinstance(item, EngineError):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            # Consumer gone (finished, disconnected, timed out): the scheduler frees the slot
            # at its next step.
            seq.cancelled = True
            self._load[index] -= 1

    def speeds(self) -> Speeds | None:
        # The pool's contexts share the cores: its one-slot measurements say little of them.
        return self._schedulers[0].speeds if len(self._schedulers) == 1 else None

    def healthy(self) -> bool:
        return all(scheduler.alive for scheduler in self._schedulers)

    def close(self) -> None:
        for scheduler in self._schedulers:
            scheduler.close()
        self._model.close()


def load_engine(settings: Settings) -> LlamaEngine:
    source = resolve_model(settings)
    summary = inspect_gguf(source.path)
    log.info(
        "model: %s (%.1f MiB, GGUF v%d, %d tensors) from %s",
        source.path,
        summary.actual_size / 2**20,
        summary.version,
        summary.tensor_count,
        source.origin.value,
    )
    described = (
        f"{summary.metadata.get('general.name')} {summary.metadata.get('general.description')}"
    )
    if "random weights" in described:
        log.warning(
            "%s is a performance twin with RANDOM WEIGHTS: its output is meaningless and it never "
            "stops at EOS. Use it for benchmarks only, with max_tokens set.",
            source.path,
        )
    model = LlamaModel(source, summary, use_mmap=settings.use_mmap)
    try:
        schedulers = _build_schedulers(model, settings)
    except Exception:
        model.close()
        raise
    engine = LlamaEngine(model, schedulers)
    log.info(
        "engine: %s, %d slot(s) x %d tokens of context, %d thread(s)",
        settings.engine,
        engine.slots,
        engine.info.n_ctx,
        settings.n_threads,
    )
    if (speeds := engine.speeds()) is not None:
        log.info(
            "speeds measured at start: %.1f ms per prompt token, decode step %.0f ms for 1 "
            "sequence, %.0f ms for %d",
            speeds.prompt_token_s * 1000,
            speeds.decode_1_s * 1000,
            speeds.decode_full_s * 1000,
            speeds.slots,
        )
    return engine


def _build_schedulers(model: LlamaModel, settings: Settings) -> list[Scheduler]:
    if settings.engine == "batched":
        return [
            Scheduler(
                model,
                slots=settings.slots,
                n_ctx_per_slot=settings.n_ctx,
                n_threads=settings.n_threads,
                n_batch=settings.n_batch,
                kv_unified=settings.kv_unified,
                kv_cache_type=settings.kv_cache_type,
                share_prefixes=settings.share_prefixes,
                prompt_cache_bytes=settings.prompt_cache_mb * 2**20,
                step_target_s=settings.step_target_ms / 1000,
                unstreamed_step_target_s=settings.unstreamed_step_target_ms / 1000,
            )
        ]
    workers = min(settings.slots, settings.n_threads)
    built: list[Scheduler] = []
    if workers < settings.slots:
        log.warning(
            "pool engine: %d slots asked, %d contexts built (one per thread, %d threads)",
            settings.slots,
            workers,
            settings.n_threads,
        )
    try:
        for i in range(workers):
            built.append(
                Scheduler(
                    model,
                    slots=1,
                    n_ctx_per_slot=settings.n_ctx,
                    n_threads=settings.n_threads // workers,
                    n_batch=settings.n_batch,
                    kv_cache_type=settings.kv_cache_type,
                    # One budget for the process, split between the contexts.
                    prompt_cache_bytes=settings.prompt_cache_mb * 2**20 // workers,
                    step_target_s=settings.step_target_ms / 1000,
                    unstreamed_step_target_s=settings.unstreamed_step_target_ms / 1000,
                    name=f"pool-{i}",
                )
            )
    except Exception:
        for scheduler in built:
            scheduler.close()
        raise
    return built
