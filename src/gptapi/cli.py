"""``gptapi`` command line: ``gptapi serve`` starts the API."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from gptapi.config import Settings
from gptapi.errors import ModelFileError
from gptapi.transport import uvicorn_options

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
        if not field:  # an invariant between settings: its message names them
            return _fail(f"invalid settings: {first['msg'].removeprefix('Value error, ')}")
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
    if args.workers > 1:
        return _serve_workers(args, settings)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    server = _DrainingServer(config, on_signal=lambda: begin_shutdown(app))
    server.run()
    return exit_code


def _serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    """Several processes: each worker builds its app from GPTAPI_* variables, so the command
    line and the split thread budget go through the environment."""
    import os

    from gptapi.auth import KeyStore

    env = {
        "GPTAPI_MODEL_PATH": str(settings.model_path) if settings.model_path else None,
        "GPTAPI_N_CTX": str(settings.n_ctx),
        "GPTAPI_LOG_LEVEL": settings.log_level,
        # llama.cpp threads spin-wait: the workers share the cores, never oversubscribe them.
        "GPTAPI_N_THREADS": str(max(1, settings.n_threads // args.workers)),
    }
    os.environ.update({k: v for k, v in env.items() if v is not None})
    keys = KeyStore.from_settings(settings)
    if keys.generated_key is not None:
        # One key for all workers, printed once.
        os.environ["GPTAPI_API_KEYS"] = keys.generated_key
        print(
            f"\nNo API key configured; generated one for this run:\n\n    {keys.generated_key}\n",
            file=sys.stderr,
            flush=True,
        )
    # A worker that cannot load writes its line here and asks this process to stop (see
    # app.end_the_server): one clear line and exit 1, as with one process.
    import tempfile
    from pathlib import Path

    from gptapi.app import FATAL_FILE_ENV, SUPERVISOR_ENV
    from gptapi.serve import READY_DIR_ENV, WORKERS_ENV

    with tempfile.TemporaryDirectory(prefix="gptapi-") as tmp:
        fatal = Path(tmp) / "fatal"
        os.environ[FATAL_FILE_ENV] = str(fatal)
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        # Each worker marks itself ready there; /ready is 200 only once every worker has.
        os.environ[READY_DIR_ENV] = tmp
        os.environ[WORKERS_ENV] = str(args.workers)
        uvicorn.run(
            "gptapi.app:create_app_from_env",
            factory=True,
            workers=args.workers,
            **uvicorn_options(settings),
        )
        if fatal.exists():
            _fail(f"a worker could not start: {fatal.read_text().strip()}")
            return 1  # as one process whose model fails to load
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return _fail(f"unknown command {args.command}")  # pragma: no cover - argparse guards this


if __name__ == "__main__":
    sys.exit(main())
