"""A llama.cpp engine: one memory-mapped model, one context, one request decoding at a time.

llama.cpp calls run on a dedicated thread, never on the event loop. A ``Llama`` object is not
safe to use from two threads at once, so requests take turns behind an asyncio lock; the time
spent waiting for it is the request's queue time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import llama_cpp

from gptapi.engine.base import Completion, FinishReason, ModelInfo, SamplingParams
from gptapi.engine.output import OutputText
from gptapi.errors import ContextLengthExceeded, ModelFileError
from gptapi.modelfile import ModelSource

log = logging.getLogger("gptapi.engine")


class LlamaEngine:
    def __init__(self, source: ModelSource, *, n_ctx: int, n_threads: int, n_batch: int) -> None:
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(source.path),
                n_ctx=n_ctx,
                n_batch=min(n_batch, n_ctx),
                n_threads=n_threads,
                n_threads_batch=n_threads,
                use_mmap=True,
                verbose=False,
            )
        except ValueError as exc:
            raise ModelFileError(f"{source.path}: llama.cpp could not load it ({exc})") from None
        self._vocab = self._llm._model.vocab
        meta = self._llm.metadata
        model = self._llm._model
        self._info = ModelInfo(
            id=meta.get("general.name") or source.path.stem,
            path=source.path,
            size_bytes=source.path.stat().st_size,
            origin=source.origin.value,
            n_ctx=self._llm.n_ctx(),
            chat_template=meta.get("tokenizer.chat_template") or None,
            bos_token=model.token_get_text(self._llm.token_bos()),
            eos_token=model.token_get_text(self._llm.token_eos()),
        )
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-decode")

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _tokenize(self, prompt: str) -> list[int]:
        # Tokenizing reads only the vocabulary, so it may run beside a decode.
        tokens: list[int] = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        return tokens

    async def count_tokens(self, prompt: str) -> int:
        return len(await asyncio.to_thread(self._tokenize, prompt))

    async def complete(self, prompt: str, params: SamplingParams) -> Completion:
        tokens = await asyncio.to_thread(self._tokenize, prompt)
        if len(tokens) + params.max_tokens > self._info.n_ctx:
            raise ContextLengthExceeded(
                f"prompt ({len(tokens)} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                f"context window ({self._info.n_ctx} tokens)"
            )
        enqueued = time.perf_counter()
        cancel = threading.Event()
        async with self._lock:
            queue_s = time.perf_counter() - enqueued
            job = asyncio.get_running_loop().run_in_executor(
                self._executor, self._decode, tokens, params, cancel
            )
            try:
                text, finish, n_out, ttft_s, total_s = await asyncio.shield(job)
            except asyncio.CancelledError:
                # Keep the lock until the decode thread notices, so the next request
                # never shares the context with this one.
                cancel.set()
                await asyncio.wait([job])
                raise
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=len(tokens),
            completion_tokens=n_out,
            queue_s=queue_s,
            ttft_s=ttft_s,
            total_s=queue_s + total_s,
        )

    def _decode(
        self, tokens: list[int], params: SamplingParams, cancel: threading.Event
    ) -> tuple[str, FinishReason, int, float | None, float]:
        start = time.perf_counter()
        llm = self._llm
        llm.set_seed(llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed)
        out = OutputText(params.stop, skip_leading_whitespace=params.skip_leading_whitespace)
        finish: FinishReason = "length"
        n_out = 0
        ttft_s: float | None = None
        generator = llm.generate(
            tokens,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
        )
        for token in generator:
            if ttft_s is None:
                ttft_s = time.perf_counter() - start
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                finish = "stop"
                break
            n_out += 1
            out.feed(llm.detokenize([token]))
            if out.stopped:
                finish = "stop"
                break
            if n_out >= params.max_tokens:
                break
            if cancel.is_set():
                finish = "cancelled"
                break
        generator.close()
        out.finish()
        return out.text, finish, n_out, ttft_s, time.perf_counter() - start

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._llm.close()
