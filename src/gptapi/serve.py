"""Process lifecycle shared by one process and ``--workers N``."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

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
