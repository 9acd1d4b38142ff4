"""The bench package's shape: no import cycles, every subpackage installed, and one definition
of the settings every benchmark server runs with."""

import ast
import subprocess
import sys
import tomllib
from argparse import Namespace
from pathlib import Path

from bench import engines, matrix, serverenv
from bench.compare import targets
from tests.helpers import REPO

ROOT = REPO
BENCH = ROOT / "bench"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def bench_imports() -> dict[str, set[str]]:
    """Every bench module and the bench modules it imports, anywhere in it (top level, inside
    functions, under TYPE_CHECKING)."""
    modules = {_module(p): p for p in BENCH.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for dep in sorted(graph[name]):
            if found := visit(dep, [*path, name]):
                return found
        done.add(name)
        return None

    return next((c for name in sorted(graph) if (c := visit(name, []))), None)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_bench_module_imports_one_that_imports_it_back() -> None:
    graph = bench_imports()
    assert {"bench.report", "bench.plots", "bench.compare.targets"} <= graph.keys()
    assert cycle(graph) is None


def test_plots_import_without_the_report() -> None:
    # Its annotations resolve too: the Level it plots is no longer the report's.
    code = (
        "import sys, typing, bench.plots; typing.get_type_hints(bench.plots.plot_run); "
        "print('bench.report' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_every_bench_package_is_installed() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    found = {_module(p) for p in BENCH.rglob("__init__.py")}
    assert {"bench", "bench.compare"} <= found
    assert found <= set(packages)  # else `python -m bench.engines` fails where it is installed


def _gptapi_envs() -> list[dict[str, str]]:
    """The settings of every gptapi server that matrix and engines start."""
    common = {"threads": 2, "ctx": 512, "model": Path("m.gguf"), "timeout": 600.0}
    matrix_args = Namespace(**common, slots=8)
    envs = [
        matrix.config_env(matrix_args, settings, Path("run"))
        for settings, _ in matrix._configs(matrix_args).values()
    ]
    engines_args = engines.parse_args(
        ["--threads", "2", "--ctx", "512", "--model", "m.gguf", "--variant", "v:GPTAPI_X=1"]
    )
    envs += [t.env for t in targets.targets(engines_args) if t.kind == "gptapi"]
    return envs


def test_every_benchmark_server_runs_with_the_same_key_and_lifted_limits() -> None:
    envs = _gptapi_envs()
    assert len(envs) >= 5 + 4
    for env in envs:
        assert env["GPTAPI_API_KEYS"] == serverenv.API_KEY
        assert env.items() >= serverenv.LIFTED_LIMITS.items()
        assert env["GPTAPI_N_THREADS"] == "2" and env["GPTAPI_N_CTX"] == "512"
        assert env["GPTAPI_MODEL_PATH"] == "m.gguf"


def test_the_lifted_limits_are_above_what_a_benchmark_sends() -> None:
    limits = serverenv.LIFTED_LIMITS
    assert int(limits["GPTAPI_MAX_QUEUE"]) >= 10_000
    assert int(limits["GPTAPI_MAX_INFLIGHT_PER_KEY"]) >= 10_000
    for key in ("GPTAPI_RATE_LIMIT", "GPTAPI_RATE_LIMIT_BURST", "GPTAPI_TOKEN_RATE_LIMIT"):
        assert int(limits[key].split("/")[0]) >= 1_000_000


def test_a_configuration_s_own_settings_go_over_the_shared_ones() -> None:
    env = serverenv.server_env(
        threads=2, ctx=4096, request_timeout_s=60, model=None, GPTAPI_MAX_QUEUE="5"
    )
    assert env["GPTAPI_MAX_QUEUE"] == "5"
    assert env["GPTAPI_REQUEST_TIMEOUT_S"] == "60"
    assert "GPTAPI_MODEL_PATH" not in env  # the embedded model


def test_the_stress_matrix_traces_python_allocations_though_the_server_default_does_not() -> None:
    from gptapi.config import Settings

    assert Settings().tracemalloc is False  # its cost: docs/memory.md
    matrix_args = Namespace(threads=2, ctx=512, model=None, timeout=600.0, slots=8)
    for settings, _ in matrix._configs(matrix_args).values():
        assert matrix.config_env(matrix_args, settings, Path("run"))["GPTAPI_TRACEMALLOC"] == "true"
