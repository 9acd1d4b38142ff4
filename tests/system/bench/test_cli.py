"""gptapi-bench against a live server on the real embedded model."""

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from tests.conftest import API_KEY, LiveServer, start_server, stop_server

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REQUEST_LINE = re.compile(
    r"^t=\+\s*[\d.]+s user=\s*\d+\s+task=\w+\s+input=\w+ status=(\S+) queue=\S+ ttft=\S+ "
    r"latency=(\d+)ms .*rss="
)


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--api-key", API_KEY, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def request_lines(output: Path) -> list[re.Match[str]]:
    lines = output.read_text().splitlines()
    return [m for line in lines if (m := REQUEST_LINE.match(line))]


def test_ten_users_two_requests_each(live_server: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_bench(
        "--base-url", live_server.base_url,
        "--users", "10", "--requests-per-user", "2", "--max-tokens", "8",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = request_lines(out / "output.txt")
    assert len(lines) == 20
    assert all(m.group(1) == "200" and int(m.group(2)) > 0 for m in lines)
    text = (out / "output.txt").read_text()
    assert "errors by kind: none" in text
    assert "# model: Gemma 3 270m" in text
    assert "# engine: batched" in text
    assert "growth within this level" in text
    assert re.search(r"^# commit: [0-9a-f]{7,}", text, re.M)
    assert "# slots x context: " in text and "# prompt cache: " in text
    # Each request line carries the server's view: queue, cached tokens, memory at start and
    # end, and its own KV share (from the model's shapes: 18 KiB per token on this model).
    first = next(line for line in text.splitlines() if line.startswith("t=+"))
    fields = dict(part.split("=", 1) for part in first.split()[1:] if "=" in part)
    assert fields["queue"].endswith("ms") and fields["cached"].isdigit()
    assert re.fullmatch(r"\d+\.\d->\d+\.\dMiB", fields["rss"])
    prompt_tokens, completion = (int(n) for n in fields["tokens"].split("+"))
    assert fields["kv"] == f"{(prompt_tokens + completion) * 18 / 1024:.2f}MiB"
    raw = json.loads((out / "result.json").read_text())
    assert len(raw["requests"]) == 20
    assert len({(r["task"], r["input_id"]) for r in raw["requests"]}) == 20  # distinct inputs
    assert sum(r["server"] is not None for r in raw["requests"]) == 20  # joined by id
    assert len(raw["memory_samples"]) >= 2
    for png in ("latency.png", "memory.png"):
        assert (out / png).read_bytes().startswith(PNG_SIGNATURE)
        height, width, _channels = matplotlib.image.imread(out / png).shape  # decodes it
        assert height > 100 and width > 100
    assert "![memory](memory.png)" in (out / "report.md").read_text()


@pytest.fixture()
def rate_limited_server(tmp_path: Path) -> LiveServer:
    server = start_server(tmp_path, env={"GPTAPI_RATE_LIMIT": "3/minute"})
    yield server  # type: ignore[misc]
    stop_server(server)


def test_429s_are_counted_as_their_own_error_kind(
    rate_limited_server: LiveServer, tmp_path: Path
) -> None:
    out = tmp_path / "limited"
    result = run_bench(
        "--base-url", rate_limited_server.base_url,
        "--users", "2", "--requests-per-user", "3", "--max-tokens", "4",
        "--mix", "answer=1", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    raw = json.loads((out / "result.json").read_text())
    kinds = [r["error_kind"] for r in raw["requests"]]
    assert kinds.count(None) == 3
    assert kinds.count("rate_limited") == 3
    assert "'rate_limited': 3" in (out / "output.txt").read_text()


def test_unknown_task_in_mix_is_a_clear_error() -> None:
    result = run_bench("--mix", "translate=1")
    assert result.returncode == 2
    assert "unknown task 'translate'" in result.stderr


def test_stream_mode_measures_first_token_and_inter_token_latency(
    live_server: LiveServer, tmp_path: Path
) -> None:
    out = tmp_path / "stream"
    result = run_bench(
        "--base-url", live_server.base_url,
        "--users", "2", "--requests-per-user", "1", "--max-tokens", "12",
        "--mix", "generate=1", "--stream", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    raw = json.loads((out / "result.json").read_text())
    assert [r["error_kind"] for r in raw["requests"]] == [None, None]
    for r in raw["requests"]:
        assert 0 < r["ttft_s"] < r["latency_s"]
        assert len(r["inter_token_s"]) >= 5
        assert r["completion_tokens"] == 12
    assert "inter-token:" in (out / "output.txt").read_text()


@pytest.mark.parametrize("stream", [False, True])
def test_the_same_load_through_the_openai_api(
    live_server: LiveServer, tmp_path: Path, stream: bool
) -> None:
    out = tmp_path / "run"
    result = run_bench(
        "--base-url", live_server.base_url, "--api", "openai",
        "--users", "3", "--requests-per-user", "2", "--max-tokens", "6",
        "--out", str(out), *(["--stream"] if stream else []),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = request_lines(out / "output.txt")
    assert len(lines) == 6
    assert all(m.group(1) == "200" for m in lines)
    raw = json.loads((out / "result.json").read_text())
    assert all(r["completion_tokens"] and r["completion_tokens"] <= 6 for r in raw["requests"])
    if stream:
        assert all(r["ttft_s"] is not None for r in raw["requests"])


def test_a_missing_bench_extra_is_one_line_before_any_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from bench import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util, "find_spec", lambda name: None if name == "matplotlib" else real(name)
    )
    # No server at this address: the check must come before any request is tried.
    code = cli.main(["run", "--base-url", "http://127.0.0.1:9", "--api-key", "k" * 20])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "missing matplotlib" in err[0] and "gptapi[bench]" in err[0]


def test_capacity_finds_the_users_and_rate_within_targets_and_says_so_in_one_line(
    live_server: LiveServer, tmp_path: Path
) -> None:
    out = tmp_path / "capacity"
    result = subprocess.run(
        [
            sys.executable, "-m", "bench.cli", "capacity", "--api-key", API_KEY,
            "--base-url", live_server.base_url, "--max-users", "2", "--requests-per-user", "1",
            "--max-tokens", "4", "--p95-ttft", "60", "--p95-latency", "60",
            "--duration", "2", "--min-rate", "1", "--max-rate", "2", "--rate-steps", "1",
            "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = "this server serves 2 concurrent users at p95 TTFT <= 60 s and p95 latency <= 60 s"
    assert answer in result.stdout
    report = (out / "capacity.md").read_text()
    assert answer in report and "open loop: 2 requests per second" in report
    data = json.loads((out / "capacity.json").read_text())
    assert [p["load"] for p in data["probes"]["closed"]] == [1, 2]
    assert [p["load"] for p in data["probes"]["open"]] == [1, 2]  # 4/s is above --max-rate
    assert all(p["passed"] for p in data["probes"]["closed"])
    assert (out / "capacity.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (out / "closed-2" / "output.txt").exists()
    (out / "capacity.md").unlink()
    rerun = subprocess.run(
        [sys.executable, "-m", "bench.cli", "report", str(out)], capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "capacity.md").read_text() == report
