"""``gptapi`` command line: ``gptapi serve`` starts the API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gptapi.config import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptapi",
        description="Self-hosted CPU LLM API. Every option can also be set as a GPTAPI_* "
        "environment variable (e.g. GPTAPI_PORT); command-line options win.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="start the HTTP API",
        description="Start the HTTP API on the resolved model: --model / GPTAPI_MODEL_PATH, "
        "else the heavy model downloaded into models/, else the embedded Gemma 3 270M.",
    )
    serve.add_argument("--host", help="interface to bind (GPTAPI_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (GPTAPI_PORT, default 8000)")
    serve.add_argument(
        "--model", type=Path, metavar="PATH", help="GGUF model file (GPTAPI_MODEL_PATH)"
    )
    serve.add_argument(
        "--threads", type=int, help="llama.cpp threads (GPTAPI_N_THREADS, default: physical cores)"
    )
    serve.add_argument(
        "--ctx", type=int, help="context window in tokens (GPTAPI_N_CTX, default 4096)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes, each with its own engine over the same mmap'd model; "
        "threads and slots are per worker, threads split evenly (default 1)",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log level (GPTAPI_LOG_LEVEL, default info)",
    )
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "model_path": args.model,
        "n_threads": args.threads,
        "n_ctx": args.ctx,
        "log_level": args.log_level,
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from gptapi.serve import fail, serve

    if args.command != "serve":  # pragma: no cover - argparse guards this
        return fail(f"unknown command {args.command}")
    try:
        settings = _settings_from(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        if not field:  # an invariant between settings: its message names them
            return fail(f"invalid settings: {first['msg'].removeprefix('Value error, ')}")
        return fail(f"invalid setting {field}: {first['msg']}")
    return serve(settings, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
