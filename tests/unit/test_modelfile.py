from pathlib import Path

import pytest

from gptapi.config import Settings
from gptapi.errors import ModelFileError
from gptapi.modelfile import ModelOrigin, inspect_gguf, resolve_model


def test_embedded_model_is_a_complete_gguf(model_path: Path) -> None:
    summary = inspect_gguf(model_path)
    assert summary.version == 3
    assert summary.tensor_count > 0
    assert summary.actual_size == summary.expected_size
    assert summary.metadata["general.architecture"] == "gemma3"


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelFileError, match=r"nope\.gguf: model file does not exist"):
        inspect_gguf(missing)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not a regular file"):
        inspect_gguf(tmp_path)


def test_non_gguf_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_text("<html>not a model</html>")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        inspect_gguf(bogus)


def test_truncated_file_is_refused(tmp_path: Path, model_path: Path) -> None:
    truncated = tmp_path / "cut.gguf"
    with model_path.open("rb") as src:
        truncated.write_bytes(src.read(model_path.stat().st_size - 4096))
    with pytest.raises(ModelFileError, match="truncated GGUF file"):
        inspect_gguf(truncated)


def test_file_cut_inside_header_is_refused(tmp_path: Path, model_path: Path) -> None:
    cut = tmp_path / "header.gguf"
    with model_path.open("rb") as src:
        cut.write_bytes(src.read(100))
    with pytest.raises(ModelFileError, match="truncated GGUF header"):
        inspect_gguf(cut)


def test_unreadable_file_is_refused(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, where permission bits do not stop reads; simulate the OS refusal.
    target = tmp_path / "locked.gguf"
    target.write_bytes(b"GGUF")

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ModelFileError, match="not readable"):
        inspect_gguf(target)


def test_resolution_prefers_setting_then_download_then_embedded(tmp_path: Path) -> None:
    explicit = tmp_path / "explicit.gguf"
    models = tmp_path / "models"
    models.mkdir()
    assert resolve_model(Settings(model_path=explicit)).origin is ModelOrigin.SETTING

    settings = Settings(models_dir=models)
    assert resolve_model(settings).origin is ModelOrigin.EMBEDDED

    downloaded = models / settings.default_model_file
    downloaded.write_bytes(b"")
    source = resolve_model(settings)
    assert source.origin is ModelOrigin.DOWNLOADED
    assert source.path == downloaded


def test_a_manifest_names_a_downloaded_file_with_another_name(tmp_path: Path) -> None:
    other = tmp_path / "other-model.gguf"
    other.write_bytes(b"")
    (tmp_path / "other-model.gguf.manifest.json").write_text('{"file": "other-model.gguf"}')
    source = resolve_model(Settings(models_dir=tmp_path))
    assert source.origin is ModelOrigin.DOWNLOADED
    assert source.path == other
