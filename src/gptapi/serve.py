"""Process lifecycle, all of it: one process or ``--workers N``, readiness across workers, drain
on SIGTERM/SIGINT (queued and new requests refused at once, running ones finish), and a model
that cannot load ending the server with one line and exit 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from gptapi.config import Settings
from gptapi.edge.transport import configure, uvicorn_options
from gptapi.errors import ModelFileError

log = logging.getLogger("gptapi")

# Set by `gptapi serve --workers N` for its workers (not GPTAPI_ settings: internal).
FATAL_FILE_ENV = "_GPTAPI_FATAL_FILE"
SUPERVISOR_ENV = "_GPTAPI_SUPERVISOR_PID"
READY_DIR_ENV = "_GPTAPI_READY_DIR"
WORKERS_ENV = "_GPTAPI_WORKERS"


def mark_worker_ready() -> None:
    """A worker that has loaded its model says so in the directory the CLI shares with all of
    them: one file per process id. Requests reach whichever worker accepts the connection, so
    /ready must not answer 200 from the first worker that loaded while another still loads."""
    directory = os.environ.get(READY_DIR_ENV)
    if directory:
        with suppress(OSError):
            (Path(directory) / f"ready-{os.getpid()}").touch()


def unmark_worker_ready() -> None:
    directory = os.environ.get(READY_DIR_ENV)
    if directory:
        with suppress(OSError):
            (Path(directory) / f"ready-{os.getpid()}").unlink()


def workers_not_ready() -> tuple[int, int]:
    """(workers still loading, workers in all); (0, 1) for one process. A worker counts as ready
    while its marker exists and its process lives (uvicorn replaces a worker that dies: the new
    one has a new pid and marks itself once loaded)."""
    directory, expected = os.environ.get(READY_DIR_ENV), os.environ.get(WORKERS_ENV, "")
    if not directory or not expected.isdigit():
        return 0, 1
    ready = 0
    with suppress(OSError):
        for marker in Path(directory).glob("ready-*"):
            pid = marker.name.removeprefix("ready-")
            if pid.isdigit() and _alive(int(pid)):
                ready += 1
    return max(0, int(expected) - ready), int(expected)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process reused the pid
        return False
    return True


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


def fail(message: str) -> int:
    """One line on stderr and exit code 2, for what the user can fix (settings, model file)."""
    print(f"gptapi: error: {message}", file=sys.stderr)
    return 2


def serve(settings: Settings, *, workers: int = 1) -> int:
    """``gptapi serve``: one process, or ``workers`` processes over the same mapped model."""
    from gptapi.app import create_app
    from gptapi.modelfile import inspect_gguf, resolve_model

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
        return fail(getattr(exc, "message", None) or str(exc))
    if workers > 1:
        return _serve_workers(workers, settings)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    server = _DrainingServer(config, on_signal=lambda: begin_shutdown(app))
    server.run()
    return exit_code


def _serve_workers(workers: int, settings: Settings) -> int:
    """Several processes: each worker builds its app from GPTAPI_* variables, so the command
    line and the split thread budget go through the environment."""
    from gptapi.edge.auth import KeyStore

    env = {
        "GPTAPI_MODEL_PATH": str(settings.model_path) if settings.model_path else None,
        "GPTAPI_N_CTX": str(settings.n_ctx),
        "GPTAPI_LOG_LEVEL": settings.log_level,
        # llama.cpp threads spin-wait: the workers share the cores, never oversubscribe them.
        "GPTAPI_N_THREADS": str(max(1, settings.n_threads // workers)),
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
    # end_the_server below): one clear line and exit 1, as with one process.
    with tempfile.TemporaryDirectory(prefix="gptapi-") as tmp:
        fatal = Path(tmp) / "fatal"
        os.environ[FATAL_FILE_ENV] = str(fatal)
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        # Each worker marks itself ready there; /ready is 200 only once every worker has.
        os.environ[READY_DIR_ENV] = tmp
        os.environ[WORKERS_ENV] = str(workers)
        uvicorn.run(
            "gptapi.serve:create_app_from_env",
            factory=True,
            workers=workers,
            **uvicorn_options(settings),
        )
        if fatal.exists():
            fail(f"a worker could not start: {fatal.read_text().strip()}")
            return 1  # as one process whose model fails to load
    return 0


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``--workers N``): settings from GPTAPI_* only."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    configure(settings)
    from gptapi.app import create_app

    app = create_app(settings, on_fatal=end_the_server)
    _drain_on_stop_signal(app)
    return app


def end_the_server(message: str) -> None:
    """A worker whose model cannot load ends the whole server, instead of staying up answering
    503 forever next to the others: its line goes to the file the CLI named, then the CLI's
    process (uvicorn's supervisor) is asked to stop, and it exits 1 with that line."""
    path, supervisor = os.environ.get(FATAL_FILE_ENV), os.environ.get(SUPERVISOR_ENV)
    if path:
        with suppress(OSError):
            Path(path).write_text(message)
    if supervisor and supervisor.isdigit() and int(supervisor) == os.getppid():
        os.kill(os.getppid(), signal.SIGTERM)


def _drain_on_stop_signal(app: FastAPI) -> None:
    """A worker's uvicorn Server is uvicorn's own (the CLI's draining server runs one process
    only), and it has installed its SIGTERM/SIGINT handlers before it calls this factory: wrap
    them, so a worker refuses queued and new requests at once (503 ``draining``) and lets only
    the running ones finish, as one process does. Before, the queued ones were served while the
    grace lasted and dropped when it ended."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    try:
        loop = asyncio.get_running_loop()  # uvicorn's, while it loads the app
    except RuntimeError:
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(
            signum: int, frame: FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            # Signal handlers run between bytecodes; touch asyncio state from the loop.
            loop.call_soon_threadsafe(begin_shutdown, app)
            previous(signum, frame)

        signal.signal(sig, handler)


def begin_shutdown(app: FastAPI) -> None:
    """Stop admitting: queued and new requests get 503; running ones may finish."""
    gateway = app.state.gateway
    if gateway is not None:
        gateway.admission.drain()
