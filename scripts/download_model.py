#!/usr/bin/env python3
"""Download the heavy default model (Gemma 3 4B instruct, Q8_0, ~4.13 GB) into models/.

    python scripts/download_model.py                       # the default model
    python scripts/download_model.py --preset llama-3.2-3b # another family (--list: all)
    python scripts/download_model.py --repo ORG/NAME --file X.gguf --revision main --dest models

Uses huggingface-hub (HF_ENDPOINT and HF_TOKEN are honoured; the token is needed only for gated
repositories). An interrupted download resumes where it stopped. Free disk space is checked
before starting; size and SHA-256 are verified after. A manifest is written next to the file;
`gptapi serve` then finds the model in models/ on its own. Offline or with a bad name it fails
at once with one line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_REPO = "bartowski/google_gemma-3-4b-it-GGUF"
DEFAULT_FILE = "google_gemma-3-4b-it-Q8_0.gguf"


@dataclass(frozen=True)
class Preset:
    repo: str
    file: str
    revision: str
    sha256: str | None  # None: verified against the hub's LFS hash of that revision
    size: str  # for --list
    note: str


# Instruct models of the 2-4.5 GB class, each a family gptapi serves (docs/models.md). Pinned
# hashes and commits were taken from a public catalog that re-hashed the files (no hub is
# reachable from where gptapi is developed, so they were not re-verified here); a mismatch stops
# the download, it never passes a wrong file.
PRESETS = {
    "gemma-3-4b": Preset(DEFAULT_REPO, DEFAULT_FILE, "main", None, "4.13 GB",
                         "Gemma 3 4B instruct Q8_0: the default"),
    "llama-3.2-3b": Preset(
        "unsloth/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        "e7d0997e49c9cb00d88b4c1a6a16aa894b0bbc31",
        "6c99cc00ae910f6a532a80022cb4bc1939094527a089c29294b841c0bd87f74d", "2.02 GB",
        "Llama 3.2 3B instruct Q4_K_M (Llama 3 BPE tokenizer; gated upstream, this mirror not)"),
    "granite-3.3-2b": Preset(
        "ibm-granite/granite-3.3-2b-instruct-GGUF", "granite-3.3-2b-instruct-Q4_K_M.gguf",
        "7cdf86ccd1f1bb3491c9b7017b033f2e51367397",
        "ac71e9e32c0bea919b409c5918f69ca74339854b0319c5065e4e9fb6d95c4852", "1.55 GB",
        "IBM Granite 3.3 2B instruct Q4_K_M, IBM's own conversion"),
    "qwen2.5-3b": Preset(
        "Qwen/Qwen2.5-3B-Instruct-GGUF", "qwen2.5-3b-instruct-q4_k_m.gguf", "main", None,
        "~2.1 GB", "Qwen 2.5 3B instruct Q4_K_M, Qwen's own conversion (tools natively)"),
    "phi-3.5-mini": Preset(
        "bartowski/Phi-3.5-mini-instruct-GGUF", "Phi-3.5-mini-instruct-Q4_K_M.gguf", "main", None,
        "~2.4 GB", "Phi-3.5 mini instruct Q4_K_M (SentencePiece tokenizer)"),
}  # fmt: skip
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MARGIN = 256 * 2**20  # keep some disk free beyond the file itself


class DownloadError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no details'}"


def _partial_bytes(dest: Path, filename: str) -> int:
    # huggingface-hub keeps a partial download in <dest>/.cache/huggingface/download/
    cache = dest / ".cache" / "huggingface" / "download"
    return (
        sum(p.stat().st_size for p in cache.glob(f"{Path(filename).name}*.incomplete"))
        if cache.exists()
        else 0
    )


def download(
    repo: str, filename: str, revision: str, dest: Path, expected_sha256: str | None
) -> Path:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token = os.environ.get("HF_TOKEN") or None
    url = hf_hub_url(repo, filename, revision=revision)
    try:
        meta = get_hf_file_metadata(url, token=token, timeout=15)
    except RepositoryNotFoundError:
        raise DownloadError(f"repository {repo!r} not found (or gated: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise DownloadError(f"revision {revision!r} not found in {repo}") from None
    except EntryNotFoundError:
        raise DownloadError(f"file {filename!r} not found in {repo}@{revision}") from None
    except Exception as exc:  # offline, DNS, TLS, proxy: one line, no traceback
        raise DownloadError(f"cannot reach {url}: {_reason(exc)}") from None
    size = meta.size
    hub_sha256 = meta.etag if meta.etag and _SHA256.match(meta.etag) else None
    sha256 = expected_sha256 or hub_sha256
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / filename
    if size is not None:
        need = size - _partial_bytes(dest, filename) + _MARGIN
        free = shutil.disk_usage(dest).free
        if not target.exists() and free < need:
            raise DownloadError(
                f"not enough disk space in {dest}: {free / 2**30:.2f} GiB free, "
                f"{need / 2**30:.2f} GiB needed"
            )
    try:
        path = Path(hf_hub_download(repo, filename, revision=revision, local_dir=dest, token=token))
    except Exception as exc:
        raise DownloadError(
            f"download of {filename} interrupted ({_reason(exc)}); run again to resume"
        ) from None
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DownloadError(f"{path}: size {actual_size} bytes, the hub says {size}")
    actual_sha256 = sha256_of(path)
    if sha256 is not None and actual_sha256 != sha256:
        raise DownloadError(f"{path}: SHA-256 {actual_sha256} does not match {sha256}")
    manifest = {
        "repo": repo,
        "file": filename,
        "revision": revision,
        "commit": meta.commit_hash,
        "size_bytes": actual_size,
        "sha256": actual_sha256,
        "sha256_verified_against": "hub"
        if hub_sha256 and not expected_sha256
        else ("--sha256" if expected_sha256 else None),
        "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path.with_name(path.name + ".manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="download_model.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a known model (--list)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument(
        "--repo", default=DEFAULT_REPO, help=f"hub repository (default {DEFAULT_REPO})"
    )
    parser.add_argument(
        "--file", default=DEFAULT_FILE, help=f"file in the repository (default {DEFAULT_FILE})"
    )
    parser.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    parser.add_argument(
        "--dest", type=Path, default=Path("models"), help="target folder (default models/)"
    )
    parser.add_argument(
        "--sha256", default=None, help="expected SHA-256 (default: the hub's LFS hash)"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, preset in PRESETS.items():
            pinned = "SHA-256 pinned" if preset.sha256 else "hub's SHA-256"
            print(f"{name:15} {preset.size:>8}  {preset.note} [{pinned}]")
        return 0
    if args.preset:
        preset = PRESETS[args.preset]
        args.repo, args.file, args.revision = preset.repo, preset.file, preset.revision
        args.sha256 = args.sha256 or preset.sha256
    try:
        path = download(args.repo, args.file, args.revision, args.dest, args.sha256)
    except DownloadError as exc:
        print(f"download_model: error: {exc}", file=sys.stderr)
        return 2
    print(f"downloaded {path} ({path.stat().st_size / 2**30:.2f} GiB), verified; manifest written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
