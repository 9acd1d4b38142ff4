"""scripts/download_model.py against a stand-in hub on loopback (the real huggingface-hub client
code runs; nothing reaches the internet)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import REPO, script

SCRIPT = REPO / "scripts" / "download_model.py"
REPO = "standin/gemma-3-270m-GGUF"
FILE = "gemma-3-270m-q4_k_m.gguf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class StandInHub:
    """Serves one file at /{REPO}/resolve/{rev}/{FILE} like the hub does for LFS files: HEAD with
    commit, ETag (the SHA-256) and size; GET with Range for resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.cut_every_get_after: int | None = None  # bytes per response before breaking off
        self.ranges: list[str | None] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _known(self) -> bool:
                if self.path.startswith(f"/{REPO}/resolve/") and self.path.endswith(f"/{FILE}"):
                    return True
                self.send_response(404)
                code = "RepoNotFound" if not self.path.startswith(f"/{REPO}/") else "EntryNotFound"
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def _headers(self, status: int, length: int, start: int = 0) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hub.sha256}"')
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{hub.size - 1}/{hub.size}")
                self.end_headers()

            def do_HEAD(self) -> None:
                if self._known():
                    self._headers(200, hub.size)

            def do_GET(self) -> None:
                if not self._known():
                    return
                requested = self.headers.get("Range")
                hub.ranges.append(requested)
                start = int(requested.split("=")[1].split("-")[0]) if requested else 0
                self._headers(206 if start else 200, hub.size - start, start)
                limit = hub.size
                if hub.cut_every_get_after is not None:
                    limit = min(hub.size, start + hub.cut_every_get_after)
                with hub.path.open("rb") as f:
                    f.seek(start)
                    remaining = limit - start
                    while remaining > 0 and (chunk := f.read(min(2**20, remaining))):
                        self.wfile.write(chunk)
                        remaining -= len(chunk)
                if limit < hub.size:
                    self.connection.close()  # the transfer breaks off here

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[StandInHub]:
    served = tmp_path_factory.mktemp("hub") / FILE
    shutil.copyfile(model_path, served)
    standin = StandInHub(served)
    yield standin
    standin.server.shutdown()


def download(hub: StandInHub, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "10",
        "HF_HUB_DOWNLOAD_TIMEOUT": "10",
    }
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--repo", REPO, "--file", FILE, "--dest", str(dest), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_downloads_verifies_and_writes_a_manifest(hub: StandInHub, tmp_path: Path) -> None:
    result = download(hub, tmp_path)
    assert result.returncode == 0, result.stderr
    target = tmp_path / FILE
    assert target.stat().st_size == hub.size
    manifest = json.loads((tmp_path / f"{FILE}.manifest.json").read_text())
    assert manifest["sha256"] == hub.sha256
    assert manifest["sha256_verified_against"] == "hub"
    assert manifest["commit"] == COMMIT
    assert manifest["repo"] == REPO


def test_an_interrupted_download_resumes_where_it_stopped(hub: StandInHub, tmp_path: Path) -> None:
    hub.ranges.clear()
    hub.cut_every_get_after = 60 * 2**20  # every transfer breaks off after 60 MiB
    try:
        first = download(hub, tmp_path)
    finally:
        hub.cut_every_get_after = None
    if first.returncode != 0:  # the client gave up retrying: the next run picks up the rest
        assert "run again to resume" in first.stderr
        assert len(first.stderr.strip().splitlines()) == 1
        assert download(hub, tmp_path).returncode == 0
    offsets = [int(r.split("=")[1].split("-")[0]) for r in hub.ranges if r]
    assert offsets and offsets == sorted(offsets) and offsets[0] >= 60 * 2**20
    assert hashlib.sha256((tmp_path / FILE).read_bytes()).hexdigest() == hub.sha256


def test_a_missing_file_fails_at_once_with_one_line(hub: StandInHub, tmp_path: Path) -> None:
    result = download(hub, tmp_path, "--file", "nope.gguf")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0]


def test_a_wrong_checksum_is_refused(hub: StandInHub, tmp_path: Path) -> None:
    result = download(hub, tmp_path, "--sha256", "0" * 64)
    assert result.returncode == 2
    assert "does not match" in result.stderr


def test_an_unreachable_hub_fails_at_once_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "5"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dest", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0]


def test_presets_are_listed_and_well_formed() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--list"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    module = script("download_model")
    assert module.PRESETS["gemma-3-4b"].file == module.DEFAULT_FILE
    for name, preset in module.PRESETS.items():
        assert name in result.stdout
        assert preset.file.endswith(".gguf")
        assert preset.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", preset.sha256)
        assert preset.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", preset.revision)
        assert (preset.sha256 is None) == (preset.revision == "main")  # pinned: file and commit
