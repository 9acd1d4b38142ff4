"""A request's own share of the KV cache, from the model file's shapes.

The KV buffer is allocated once at start-up (slots x context); a request occupies cells in it.
Its share: for every full-attention layer one cell per token it holds (prompt + completion), for
every sliding-window layer at most the window's worth. Cells of a prompt prefix shared with
concurrent requests are counted in each of them (each request's view)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gptapi.modelfile import inspect_gguf

_ELEMENT_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}  # ggml block sizes
# llama.cpp fixes Gemma 3's layer pattern in code, not in the GGUF: every 6th layer attends to
# the whole context, the other five to a sliding window.
_GLOBAL_EVERY = {"gemma3": 6}


@dataclass(frozen=True)
class KvShape:
    global_bytes_per_token: float  # summed over the full-attention layers
    window_bytes_per_token: float  # summed over the sliding-window layers
    window: int  # tokens a sliding-window layer keeps; 0 = no such layers

    def request_bytes(self, tokens: int) -> int:
        kept = min(tokens, self.window) if self.window else 0
        return round(self.global_bytes_per_token * tokens + self.window_bytes_per_token * kept)


def kv_shape(model: Path, kv_type: str = "f16") -> KvShape:
    meta = inspect_gguf(model).metadata
    arch = str(meta["general.architecture"])

    def get(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, int | float) else default

    layers = get("block_count")
    heads_kv = get("attention.head_count_kv", get("attention.head_count"))
    head_dim = get("embedding_length") // max(get("attention.head_count", 1), 1)
    k_dim, v_dim = get("attention.key_length", head_dim), get("attention.value_length", head_dim)
    per_layer = heads_kv * (k_dim + v_dim) * _ELEMENT_BYTES[kv_type]
    window = get("attention.sliding_window")
    every = _GLOBAL_EVERY.get(arch)
    if not window or every is None:
        return KvShape(per_layer * layers, 0.0, 0)
    n_global = sum(1 for il in range(layers) if (il + 1) % every == 0)
    return KvShape(per_layer * n_global, per_layer * (layers - n_global), window)
