"""Per-sequence llama.cpp sampler chains."""

from __future__ import annotations

from typing import Any

import llama_cpp

from gptapi.engine.base import SamplingParams

# Below this temperature decoding is greedy. Sampling at such a temperature is argmax anyway
# (a logit 0.1 below the best one is e^-10 as likely at 0.01), and dividing logits by a value
# near zero overflows float32: at 1e-40 every logit became inf, the softmax NaN, and llama.cpp's
# dist sampler picked the last candidate (gibberish).
GREEDY_BELOW_TEMPERATURE = 0.01


def make_sampler(params: SamplingParams, n_vocab: int) -> Any:
    """A llama.cpp sampler chain, or None for plain greedy decoding (argmax in numpy is ~10x
    cheaper than llama_sampler_sample, which copies the whole 262k-entry vocabulary per call).

    Logit bias and penalties come first, on the raw logits, as OpenAI applies them; llama.cpp's
    chain accepts every sampled token, so the penalties count the generated tokens only."""
    greedy = params.temperature < GREEDY_BELOW_TEMPERATURE
    if greedy and not params.shapes_logits:
        return None
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if params.logit_bias:
        biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
        for entry, (token, bias) in zip(biases, params.logit_bias, strict=True):
            entry.token, entry.bias = token, bias
        llama_cpp.llama_sampler_chain_add(
            chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), biases)
        )
    if params.presence_penalty or params.frequency_penalty or params.repetition_penalty != 1.0:
        sampler = llama_cpp.llama_sampler_init_penalties(
            n_vocab,
            params.max_tokens,  # the window: every generated token
            params.repetition_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        )
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    if greedy:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    # top-k first: it shrinks a 262k-token vocabulary before the costlier top-p sort.
    if params.top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        llama_cpp.llama_sampler_chain_add(
            chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1)
        )
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain
