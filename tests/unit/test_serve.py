"""Readiness across ``--workers N``: /ready is 200 only once every worker has loaded; a worker
that died does not count (uvicorn's replacement marks itself when it has loaded)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptapi import serve
from tests.helpers import assert_error, serve_fake, wait_until


def test_workers_count_as_ready_only_with_a_live_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(serve.READY_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(serve.WORKERS_ENV, "2")
    assert serve.workers_not_ready() == (2, 2)
    serve.mark_worker_ready()
    assert serve.workers_not_ready() == (1, 2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (tmp_path / f"ready-{dead.stdout.strip()}").touch()  # a worker that has exited
    assert serve.workers_not_ready() == (1, 2)
    serve.unmark_worker_ready()
    assert serve.workers_not_ready() == (2, 2)


def test_ready_is_503_while_another_worker_still_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(serve.READY_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(serve.WORKERS_ENV, "2")
    with serve_fake() as c:  # this worker has loaded and marks itself
        wait_until((tmp_path / f"ready-{os.getpid()}").exists, what="this worker's marker")
        r = c.get("/ready")
        assert_error(r, 503, "model_not_ready")
        assert "1 of 2 workers" in r.json()["error"]["message"]
        (tmp_path / f"ready-{os.getppid()}").touch()  # the other worker, alive
        assert c.get("/ready").status_code == 200
    assert not (tmp_path / f"ready-{os.getpid()}").exists()  # unmarked when it stops


def test_one_process_needs_no_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(serve.READY_DIR_ENV, raising=False)
    assert serve.workers_not_ready() == (0, 1)


def test_ready_is_503_once_the_server_drains() -> None:
    with serve_fake() as c:
        assert c.get("/ready").status_code == 200
        c.app.state.gateway.admission.drain()  # type: ignore[attr-defined]
        r = c.get("/ready")
        assert_error(r, 503, "server_busy")
        assert "shutting down" in r.json()["error"]["message"]
