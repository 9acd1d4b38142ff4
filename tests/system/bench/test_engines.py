import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import engines
from bench.compare import tables, targets
from bench.compare.levels import Level
from bench.stats import percentile
from bench.workloads import distinct as prompt
from bench.workloads import shared_instructions
from gptapi import prompts
from gptapi.modelfile import embedded_model_path
from tests.helpers import GEMMA_TEMPLATE, INSTRUCT, REPO


def test_every_request_gets_a_distinct_prompt() -> None:
    prompts = [prompt(i) for i in range(1000)]
    assert len(set(prompts)) == 1000


def test_the_shared_instructions_workload_shares_about_350_tokens_then_differs(tokenizer) -> None:  # type: ignore[no-untyped-def]
    a, b = tokenizer(shared_instructions(0)), tokenizer(shared_instructions(1))
    common = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert 320 <= common <= 380
    assert len(a) - common < 30
    assert len({shared_instructions(i) for i in range(200)}) == 200


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None


def test_llama_server_gets_the_text_gptapi_feeds_its_engine(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Same text -> same prompt tokens on both sides of the comparison.
    summary = SimpleNamespace(metadata={"tokenizer.chat_template": GEMMA_TEMPLATE})
    monkeypatch.setattr(targets, "inspect_gguf", lambda path: summary)
    render = targets.chat_renderer(Path("instruct.gguf"))
    assert render(prompt(3)) == prompts.generate_prompt(INSTRUCT, prompt(3)).text


def test_base_model_prompts_go_to_llama_server_unchanged() -> None:
    render = targets.chat_renderer(embedded_model_path())
    assert render(prompt(3)) == prompt(3)


def _level(users: int, tok_per_s: float, p95: float) -> Level:
    return Level(
        users=users,
        requests=users,
        errors=0,
        wall_s=1.0,
        output_tokens=16 * users,
        prompt_tokens_mean=32.0,
        cached_tokens_mean=0.0,
        tok_per_s=tok_per_s,
        latency_p50_s=p95,
        latency_p95_s=p95,
        ttft_p50_s=None,
        ttft_p95_s=None,
        rss_mib=0.0,
        rss_anon_mib=0.0,
        rss_file_mib=0.0,
    )


def test_paired_summary_compares_each_round_with_the_reference_round() -> None:
    # Round 2 is slower for both engines (VM drift): pairing per round cancels it out.
    results = {
        "gptapi": [_level(10, 5.0, 30.0), _level(10, 4.0, 36.0), _level(10, 5.5, 28.0)],
        "llama-server": [_level(10, 5.0, 30.0), _level(10, 4.4, 33.0), _level(10, 5.0, 28.0)],
    }
    lines = tables.paired_summary(results, "llama-server")
    row = next(line for line in lines if line.startswith("| gptapi |"))
    assert row == (
        "| gptapi | 10 | 3 | 5.00 | 0.91 / 1.00 / 1.10 | 30.00 | 1.00 / 1.00 / 1.09 | "
        "1.00 / 1.00 / 1.09 | n/a | n/a | n/a | n/a |"
    )
    ref_row = next(line for line in lines if line.startswith("| llama-server |"))
    assert "1.00 / 1.00 / 1.00" in ref_row


def test_a_variant_runs_the_batched_engine_again_with_its_settings() -> None:
    args = engines.parse_args(
        ["--slots", "16", "--variant", "quiet:GPTAPI_MEM_SAMPLE_S=0,GPTAPI_TRACEMALLOC=false"]
    )
    by_name = {t.name: t for t in targets.targets(args)}
    variant = by_name["gptapi batched (slots 16) [quiet]"]
    assert variant.env["GPTAPI_MEM_SAMPLE_S"] == "0"
    assert variant.env["GPTAPI_TRACEMALLOC"] == "false"
    assert variant.env["GPTAPI_SLOTS"] == "16"
    assert "GPTAPI_MEM_SAMPLE_S" not in by_name["gptapi batched (slots 16)"].env


def test_llama_cpp_python_server_gets_the_rendered_text_on_v1_completions() -> None:
    args = engines.parse_args(["--llama-cpp-python", "/usr/bin/python3", "--ctx", "512"])
    target = next(t for t in targets.targets(args) if t.kind == "llama-cpp-python")
    assert target.command[1:3] == ["-m", "llama_cpp.server"]
    assert "--n_ctx" in target.command and "512" in target.command
    body = targets.request_body(target, 3, 16)
    assert body == {"prompt": prompt(3), "max_tokens": 16, "temperature": 0}


def test_results_go_under_the_named_folder_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No server is started: each engine's run is replaced by one level per user count.
    ran: list[str] = []

    def run_target(
        target: targets.Target, users_levels: list[int], _: object, __: object, logs: Path
    ) -> list[Level]:
        ran.append(target.name)
        assert logs.parent.parent == tmp_path / "mine"
        return [_level(u, 10.0, 1.0) for u in users_levels]

    monkeypatch.setattr(engines, "run_target", run_target)
    monkeypatch.chdir(tmp_path)  # anything written to a default path would land here
    out = tmp_path / "mine"
    argv = ["--model", "m.gguf", "--users", "1,4", "--only", "pool", "--out", str(out)]
    assert engines.main(argv) == 0
    assert ran == ["gptapi pool (2 contexts)"]
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("engines-")
    assert {p.name for p in run_dir.iterdir()} == {"engines.md", "engines.json"}
    assert "| gptapi pool (2 contexts) | 4 |" in (run_dir / "engines.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_without_out_results_go_to_the_ignored_folder_not_docs() -> None:
    out = engines.parse_args([]).out
    assert out == Path("bench/results")
    assert "docs" not in out.parts
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(out / "engines-x" / "engines.md")],
        cwd=REPO,
        timeout=30,
    )
    assert ignored.returncode == 0, f"{out} is not git-ignored"
