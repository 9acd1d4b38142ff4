"""The servers a comparison can start and the request body each one gets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.serverenv import server_env
from bench.workloads import WORKLOADS, Workload, distinct
from gptapi.modelfile import inspect_gguf
from gptapi.prompts import render_template

# Where each kind of server says it is ready.
READY_PATH = {"gptapi": "/ready", "llama-server": "/health", "llama-cpp-python": "/v1/models"}


@dataclass
class Target:
    name: str
    command: list[str]
    kind: str  # "gptapi", "llama-server" or "llama-cpp-python"
    env: dict[str, str] = field(default_factory=dict)
    # gptapi's /generate-text wraps the prompt in the model's chat template, if it has one;
    # llama-server's /completion and llama-cpp-python's /v1/completions take raw text, so they
    # are sent the same rendered text and every engine processes the same tokens (the
    # prompt-tokens column shows it).
    render: Callable[[str], str] = str
    prompt: Workload = distinct  # the i-th request's prompt
    stream: bool = False  # stream responses: client-side TTFT and inter-token gaps
    raw: bool = False  # every engine gets the prompt as raw text (gptapi: /v1/completions)


def request_body(target: Target, i: int, new_tokens: int) -> dict[str, Any]:
    """The i-th request's body: gptapi's /generate-text, or the text gptapi would feed its
    engine for llama-server's /completion and llama-cpp-python's /v1/completions."""
    if target.kind == "gptapi":
        body: dict[str, Any] = {"prompt": target.prompt(i), "max_tokens": new_tokens,
                                "temperature": 0}  # fmt: skip
        if target.raw:
            body |= {"model": "gptapi", "stream_options": {"include_usage": True}}
        return body
    prompt = target.prompt(i) if target.raw else target.render(target.prompt(i))
    if target.kind == "llama-cpp-python":
        return {"prompt": prompt, "max_tokens": new_tokens, "temperature": 0}
    return {"prompt": prompt, "n_predict": new_tokens, "temperature": 0}


def targets(args: argparse.Namespace) -> list[Target]:
    gptapi = [sys.executable, "-m", "gptapi.cli", "serve", "--port", "{port}"]
    # The client waits up to an hour for an answer (levels.py): the server may take as long.
    base_env = server_env(
        threads=args.threads,
        ctx=args.ctx,
        request_timeout_s=3600,
        model=args.model,
        GPTAPI_LOG_LEVEL="warning",
    )

    def batched(slots: int, label: str = "", **extra: str) -> Target:
        name = f"gptapi batched (slots {slots})" + (f" [{label}]" if label else "")
        env = {**base_env, "GPTAPI_ENGINE": "batched", "GPTAPI_SLOTS": str(slots), **extra}
        return Target(name, gptapi, "gptapi", env)

    out = [
        Target(
            "gptapi one-at-a-time (slots 1)",
            gptapi,
            "gptapi",
            {**base_env, "GPTAPI_ENGINE": "batched", "GPTAPI_SLOTS": "1"},
        ),
        Target(
            f"gptapi pool ({args.threads} contexts)",
            gptapi,
            "gptapi",
            {**base_env, "GPTAPI_ENGINE": "pool", "GPTAPI_SLOTS": str(args.threads)},
        ),
        *(batched(s) for s in args.slots),
    ]
    # A/B of settings: the batched engine again under each variant's extra GPTAPI_* values.
    for variant in args.variant:
        label, _, assignments = variant.partition(":")
        extra = dict(a.split("=", 1) for a in assignments.split(",") if a)
        out += [batched(s, label, **extra) for s in args.slots]
    model = str(args.model or default_model())
    render = chat_renderer(Path(model)) if args.llama_server or args.llama_cpp_python else str
    if args.llama_server:
        for np_ in args.server_np:
            command = [str(args.llama_server), "-m", model, "-t", str(args.threads),
                       "-np", str(np_), "-c", str(args.ctx * np_), "--port", "{port}",
                       "--host", "127.0.0.1", "--no-webui"]  # fmt: skip
            out.append(Target(f"llama-server -np {np_}", command, "llama-server", render=render))
    if args.llama_cpp_python:
        # llama-cpp-python's own server as shipped: one context, one request at a time.
        command = [str(args.llama_cpp_python), "-m", "llama_cpp.server", "--model", model,
                   "--n_threads", str(args.threads), "--n_ctx", str(args.ctx),
                   "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
        out.append(Target("llama-cpp-python server", command, "llama-cpp-python", render=render))
    workload = WORKLOADS[args.workload]
    for target in out:
        target.prompt = workload
        target.stream = args.stream
        target.raw = args.raw
    return out


def chat_renderer(model: Path) -> Callable[[str], str]:
    """What gptapi's /generate-text feeds its engine for a prompt: the model's chat template
    around it when the model has one, else the prompt as it is."""
    template = inspect_gguf(model).metadata.get("tokenizer.chat_template")
    if not isinstance(template, str) or not template:
        return str

    def render(text: str) -> str:
        # No BOS text: the other servers add the BOS token themselves, as gptapi's engine does.
        return render_template(template, [{"role": "user", "content": text}])

    return render


def default_model() -> Path:
    from gptapi.modelfile import embedded_model_path

    return embedded_model_path()
