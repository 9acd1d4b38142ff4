import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gptapi.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_explains_every_serve_option() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--model", "--threads", "--ctx", "--log-level"):
        assert option in result.stdout
    assert "GPTAPI_" in result.stdout


def test_top_level_help_lists_serve() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout


def _assert_one_clear_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]


def test_missing_model_stops_start_up_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    result = run_cli("serve", "--model", str(missing))
    _assert_one_clear_line(result, str(missing), "does not exist")


def test_non_gguf_model_stops_start_up_with_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"\x00" * 1024)
    result = run_cli("serve", "--model", str(bogus))
    _assert_one_clear_line(result, str(bogus), "not a GGUF file")


def test_truncated_model_stops_start_up_with_one_line(tmp_path: Path, model_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with model_path.open("rb") as src:
        cut.write_bytes(src.read(50_000_000))
    result = run_cli("serve", "--model", str(cut))
    _assert_one_clear_line(result, str(cut), "truncated")


def test_invalid_setting_is_one_line() -> None:
    result = run_cli("serve", "--port", "70000")
    _assert_one_clear_line(result, "port")


def test_inconsistent_settings_stop_start_up_with_one_line() -> None:
    result = run_cli("serve", env={"GPTAPI_SLOTS": "64", "GPTAPI_N_BATCH": "32"})
    _assert_one_clear_line(result, "GPTAPI_SLOTS (64)", "GPTAPI_N_BATCH (32)")


def test_a_short_api_key_stops_start_up_without_echoing_it() -> None:
    short = "short-key-123"  # 13 characters
    result = run_cli("serve", env={"GPTAPI_API_KEYS": f"long-enough-key-0123456789,{short}"})
    _assert_one_clear_line(result, "API key #2", "at least 16")
    assert short not in result.stderr


def test_a_worker_that_cannot_load_its_model_ends_the_server_with_one_clear_line(
    tmp_path: Path, model_path: Path
) -> None:
    # The file passes the start-up check (a sound GGUF) but llama.cpp refuses it in the
    # workers: an architecture it does not know, spelled in as many bytes as "gemma3".
    data = model_path.read_bytes()
    assert data.count(b"gemma3") >= 1
    odd = tmp_path / "odd.gguf"
    odd.write_bytes(data.replace(b"gemma3", b"gemma9", 1))
    port = str(free_port())
    result = run_cli("serve", "--model", str(odd), "--workers", "2", "--port", port, timeout=180)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("gptapi: error:")]
    assert len(errors) == 1 and "a worker could not start" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
