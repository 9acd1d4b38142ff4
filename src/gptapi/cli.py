"""``gptapi`` command line: ``gptapi serve`` starts the API."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from gptapi.config import Settings
from gptapi.errors import ModelFileError

log = logging.getLogger("gptapi")


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


class _DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, refuse queued and new requests (503) before uvicorn drains."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_signal = on_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            # Signal handlers run between bytecodes; touch asyncio state from the loop instead.
            asyncio.get_event_loop().call_soon_threadsafe(self._on_signal)
        super().handle_exit(sig, frame)


def _fail(message: str) -> int:
    print(f"gptapi: error: {message}", file=sys.stderr)
    return 2


def serve(args: argparse.Namespace) -> int:
    from gptapi.app import begin_shutdown, create_app
    from gptapi.modelfile import inspect_gguf, resolve_model

    try:
        settings = _settings_from(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return _fail(f"invalid setting {field}: {first['msg']}")
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        # Check the file before the server starts, so a bad model is one line, not a traceback.
        inspect_gguf(resolve_model(settings).path)
        exit_code = 0

        def on_fatal(message: str) -> None:
            nonlocal exit_code
            exit_code = 1
            server.should_exit = True

        app = create_app(settings, on_fatal=on_fatal)
    except (ModelFileError, ValueError, OSError) as exc:
        return _fail(getattr(exc, "message", None) or str(exc))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
    )
    server = _DrainingServer(config, on_signal=lambda: begin_shutdown(app))
    server.run()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return _fail(f"unknown command {args.command}")  # pragma: no cover - argparse guards this


if __name__ == "__main__":
    sys.exit(main())
