"""One llama.cpp model, memory-mapped once per process, plus what every context needs from it:
tokenizing, token pieces, end-of-generation tokens, and llama.cpp's log routed into ``logging``.

Tokenizing a prompt of parts gives exactly what llama.cpp gives for the whole prompt string with
special-token parsing on (what the model's tokenizer tests check against Hugging Face), except
that control tokens come only from markup: user text is data. So the parts are not tokenized
one by one (a SentencePiece vocabulary with ``add_space_prefix``, Llama 2 or Mistral, would
give every part a leading space, and BPE merges across a part boundary would be lost): markup
is split at its control tokens, and the text between two control tokens, markup and user text
together, is tokenized as one run with special-token parsing off.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import llama_cpp

from gptapi.engine.base import Prompt, prompt_parts
from gptapi.errors import ModelFileError
from gptapi.modelfile import GgufSummary, ModelSource

log = logging.getLogger("gptapi.llama")

# ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5.
_LEVELS = {3: logging.WARNING, 4: logging.ERROR}
_backend_lock = threading.Lock()
_MARKUP_CACHE = 64  # distinct markup strings kept split
_ASCII_SPACE = " \t\n\v\f\r"  # what llama.cpp's lstrip/rstrip attributes remove (isspace)
_backend_ready = False


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _forward_llama_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp logs every tensor at INFO; keep warnings, errors, and the buffer sizes (weights,
    # KV cache, compute) that tell an operator where the RAM goes.
    message = text.decode("utf-8", errors="replace").rstrip()
    py_level = _LEVELS.get(level)
    if py_level is None and level == 2 and "buffer size" in message:
        py_level = logging.INFO
    if py_level is not None:
        log.log(py_level, "%s", message)


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


def set_field(struct: ctypes.Structure, name: str, value: object) -> None:
    """Set a ctypes struct field, refusing names the struct does not have: a typo or a field
    renamed between llama.cpp versions must fail loudly, not become a Python attribute."""
    if name not in {f[0] for f in type(struct)._fields_}:
        raise AttributeError(f"{type(struct).__name__} has no field {name!r}")
    setattr(struct, name, value)


class LlamaModel:
    """Weights shared by every context of the process (mmap: one copy in RAM)."""

    def __init__(
        self,
        source: ModelSource,
        summary: GgufSummary,
        *,
        use_mmap: bool = True,
        vocab_only: bool = False,
    ) -> None:
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        # 0.3.36 has no use_mmap field (an assignment to it would be silently ignored by ctypes):
        # the load mode says mmap, or plain reads into anonymous memory.
        set_field(
            params,
            "load_mode",
            llama_cpp.LLAMA_LOAD_MODE_MMAP if use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE,
        )
        set_field(params, "n_gpu_layers", 0)
        set_field(params, "vocab_only", vocab_only)  # tokenizer tests of other families
        self.source = source
        self.summary = summary
        self.ptr = llama_cpp.llama_model_load_from_file(str(source.path).encode(), params)
        if not self.ptr:
            raise ModelFileError(f"{source.path}: llama.cpp could not load this model")
        self.vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self.ptr))
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        # Control (and unknown) tokens by text, with their attributes: the tokens special-token
        # parsing makes of markup. One pass over the vocabulary (~0.13 s for 262k tokens).
        control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
        self._controls: dict[str, tuple[int, int]] = {}
        for token in range(self.n_vocab):
            attr = int(llama_cpp.llama_vocab_get_attr(self.vocab, token))
            text = self.token_text(token) if attr & control else ""
            if text:
                self._controls.setdefault(text, (token, attr))
        # Template markup repeats request after request; bounded (docs/sizing.md).
        self._split_markup = lru_cache(maxsize=_MARKUP_CACHE)(self._split_markup_uncached)

    @property
    def path(self) -> Path:
        return self.source.path

    def token_text(self, token: int) -> str:
        raw: bytes = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace")

    @property
    def bos_text(self) -> str:
        return self._text_of(llama_cpp.llama_vocab_bos(self.vocab))

    @property
    def eos_text(self) -> str:
        return self._text_of(llama_cpp.llama_vocab_eos(self.vocab))

    def _text_of(self, token: int) -> str:
        # A vocabulary may have no such token (-1): asking llama.cpp for its text aborts.
        return self.token_text(token) if 0 <= token < self.n_vocab else ""

    @property
    def add_bos(self) -> bool:
        return self._add_bos

    def control_texts(self) -> frozenset[str]:
        """Texts of the control (and unknown) tokens, which special-token parsing turns into the
        tokens themselves."""
        return frozenset(self._controls)

    def tokenize(self, prompt: Prompt) -> list[int]:
        """BOS (as the vocabulary asks), then the prompt's tokens: control tokens from markup
        only, the text around them in runs (module docstring). Reads only the vocabulary, so it
        is safe beside a running decode."""
        tokens = [llama_cpp.llama_vocab_bos(self.vocab)] if self._add_bos else []
        for run in self._runs(prompt):
            if isinstance(run, int):
                tokens.append(run)
            else:
                tokens += self._tokenize_part(run, parse_special=False)
        return tokens

    def _runs(self, prompt: Prompt) -> Iterator[str | int]:
        """Control tokens, and the text between them (markup and user text joined)."""
        text = ""
        strip_next = False  # the last control token eats the whitespace after it (RSTRIP)
        for part in prompt_parts(prompt):
            pieces = self._split_markup(part.text) if part.markup else (part.text,)
            for piece in pieces:
                if isinstance(piece, str):
                    if strip_next:
                        piece = piece.lstrip(_ASCII_SPACE)
                        strip_next = not piece  # all whitespace: the next piece too
                    text += piece
                    continue
                token, attr = piece
                if attr & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP:
                    text = text.rstrip(_ASCII_SPACE)
                if text:
                    yield text
                    text = ""
                yield token
                strip_next = bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP)
        if text:
            yield text

    def _split_markup_uncached(self, markup: str) -> tuple[str | tuple[int, int], ...]:
        """Markup as text and (token, attribute) pieces, in llama.cpp's order: each control
        token in turn, the longest first, splits every text piece left."""
        pieces: list[str | tuple[int, int]] = [markup]
        for text in sorted((t for t in self._controls if t in markup), key=len, reverse=True):
            split: list[str | tuple[int, int]] = []
            for piece in pieces:
                if not isinstance(piece, str) or text not in piece:
                    split.append(piece)
                    continue
                parts = piece.split(text)
                for i, part in enumerate(parts):
                    if i:
                        split.append(self._controls[text])
                    if part:
                        split.append(part)
            pieces = split
        return tuple(pieces)

    def _tokenize_part(self, text: str, *, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), buf, capacity, False, parse_special
            )
            if n >= 0:
                return list(buf[:n])
            capacity = -n

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None
