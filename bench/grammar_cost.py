"""What one grammar step costs on a real vocabulary: the full-vocabulary pass (every token
checked against the grammar) against the single-token check gptapi does first
(``engine/constrained.py``). Not a test: it prints milliseconds.

    python -m bench.grammar_cost [--model PATH] [--repeat 20]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import time
from pathlib import Path

import llama_cpp
import numpy as np

from gptapi.engine.constrained import Candidates, new_grammar
from gptapi.engine.grammar import json_schema_grammar
from gptapi.modelfile import embedded_model_path

SCHEMA = Path(__file__).parent / "data" / "schema-answer.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: embedded)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    path = args.model or embedded_model_path()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
    grammar = json_schema_grammar(json.loads(SCHEMA.read_text()))
    candidates = Candidates(n_vocab)
    logits = np.random.default_rng(0).standard_normal(n_vocab).astype(np.float32)
    opening = candidates.single(0, 0.0)  # warm the grammar's tables
    full_ms, single_ms = [], []
    for _ in range(args.repeat):
        sampler = new_grammar(vocab, grammar)
        array = candidates.over(logits)
        started = time.perf_counter()
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        full_ms.append((time.perf_counter() - started) * 1000)
        allowed = int(np.isfinite(candidates.all["logit"]).sum())
        token = int(candidates.all["id"][int(candidates.all["logit"].argmax())])
        opening = candidates.single(token, 1.0)
        started = time.perf_counter()
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(opening))
        single_ms.append((time.perf_counter() - started) * 1000)
        llama_cpp.llama_sampler_free(sampler)
    print(f"model: {path.name}, vocabulary {n_vocab} tokens, schema {SCHEMA.name}")
    print(f"full-vocabulary grammar pass at the first token: median "
          f"{statistics.median(full_ms):.2f} ms ({allowed} tokens allowed)")  # fmt: skip
    print(f"single-token check: median {statistics.median(single_ms) * 1000:.1f} us")
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    main()
