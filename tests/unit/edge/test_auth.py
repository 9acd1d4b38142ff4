import hashlib
from pathlib import Path

import pytest

from gptapi.config import Settings
from gptapi.edge.auth import KeyStore, key_id_of


def test_clear_keys_are_kept_only_as_digests() -> None:
    store = KeyStore.from_settings(Settings(api_keys="alpha-key-123456789, beta-key-123456789"))
    assert store.generated_key is None
    assert len(store.digests) == 2
    expected = {
        hashlib.sha256(k.encode()).digest() for k in ("alpha-key-123456789", "beta-key-123456789")
    }
    assert set(store.digests) == expected
    # Nothing the store keeps holds a clear key.
    assert "alpha-key" not in repr(vars(store)) and "beta-key" not in repr(vars(store))


def test_verify_returns_short_id_for_known_key_and_none_otherwise() -> None:
    store = KeyStore.from_settings(Settings(api_keys="alpha-key-123456789"))
    key_id = store.verify("alpha-key-123456789")
    assert key_id == hashlib.sha256(b"alpha-key-123456789").hexdigest()[:8]
    assert store.verify("alpha-key-12345678") is None
    assert store.verify("") is None


def test_digest_file_lets_server_run_without_clear_keys(tmp_path: Path) -> None:
    key = "file-key-abcdefghijkl"
    keys_file = tmp_path / "keys.sha256"
    keys_file.write_text(f"# ops team\n{hashlib.sha256(key.encode()).hexdigest()}\n\n")
    store = KeyStore.from_settings(Settings(api_keys_file=keys_file))
    assert store.verify(key) == key_id_of(hashlib.sha256(key.encode()).digest())


def test_digest_file_with_a_clear_key_is_refused(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.sha256"
    keys_file.write_text("my-clear-key\n")
    with pytest.raises(ValueError, match=r"keys\.sha256:1: expected a SHA-256 hex digest"):
        KeyStore.from_settings(Settings(api_keys_file=keys_file))


def test_no_configured_key_generates_a_strong_one() -> None:
    store = KeyStore.from_settings(Settings())
    assert store.generated_key is not None
    assert len(store.generated_key) >= 40
    assert store.verify(store.generated_key) is not None
    assert KeyStore.from_settings(Settings()).generated_key != store.generated_key
