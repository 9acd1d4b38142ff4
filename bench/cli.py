"""``gptapi-bench``: stress-test a gptapi server.

    gptapi-bench run --base-url http://127.0.0.1:8000 --api-key KEY --users 40 --requests-per-user 2
    gptapi-bench matrix --users 10,40          # starts its own servers, one per configuration

Every run ends by itself (``--time-cap``) and sends traffic to the given base URL only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from bench.corpus import parse_mix
from bench.procs import find_server_pids
from bench.runner import RESULTS_DIR, default_out, execute, load_config, parse_per_user


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-key",
        default=os.environ.get("GPTAPI_API_KEY"),
        help="API key (default: $GPTAPI_API_KEY)",
    )
    p.add_argument(
        "--requests-per-user",
        type=parse_per_user,
        default=None,
        help="requests each user sends (default 2 unless --duration); per user level as "
        "USERS:N pairs, e.g. 10:3,40:3,100:1",
    )
    p.add_argument("--duration", type=float, default=None, help="run for S seconds instead")
    p.add_argument(
        "--mix",
        default="generate=1,summarize=1,answer=1",
        help="task weights, e.g. generate=2,answer=1",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        help="max_tokens of every request (default 128: the API's own default)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: Poisson arrivals per second (default: closed loop)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="stream responses: client-side TTFT and inter-token latency",
    )
    p.add_argument(
        "--api",
        choices=["tasks", "openai"],
        default="tasks",
        help="tasks: /generate-text, /summarize-text, /answer-question; openai: the same inputs "
        "through /v1/completions and /v1/chat/completions",
    )
    p.add_argument(
        "--json-schema",
        type=Path,
        default=None,
        metavar="FILE",
        help="structured output: every request asks for JSON valid against this JSON Schema "
        "(json_schema on the task routes, response_format on /v1)",
    )
    p.add_argument("--timeout", type=float, default=600, help="per-request client timeout (s)")
    p.add_argument("--time-cap", type=float, default=3600, help="hard end of the run (s)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default {RESULTS_DIR}/<timestamp>/, git-ignored; docs/results "
        "only when named here)",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="gptapi-bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = root.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="load one running server")
    run.add_argument("--base-url", default="http://127.0.0.1:8000")
    run.add_argument("--users", type=int, default=10, help="concurrent simulated users")
    run.add_argument(
        "--server-pid",
        type=int,
        default=None,
        help="server pid for memory sampling (default: found by the port)",
    )
    run.add_argument(
        "--server-log",
        type=Path,
        default=None,
        help="server's log dir or requests.jsonl (default: found from the server)",
    )
    _add_load_options(run)
    matrix = sub.add_parser("matrix", help="start servers per configuration and compare them")
    matrix.add_argument("--users", default="10,40", help="user levels, e.g. 10,40,100")
    matrix.add_argument(
        "--configs",
        default="batched,pool,workers2,nommap",
        help="configurations to run (batched, pool, workers2, nommap, kvq8)",
    )
    matrix.add_argument("--model", type=Path, default=None, help="GGUF (default: embedded)")
    matrix.add_argument("--slots", type=int, default=8, help="slots (default: gptapi's)")
    matrix.add_argument(
        "--ctx", type=int, default=4096, help="context per slot (default: gptapi's)"
    )
    matrix.add_argument("--threads", type=int, default=2)
    matrix.add_argument("--note", default=None, help="a line for every header (e.g. twin model)")
    _add_load_options(matrix)
    capacity = sub.add_parser(
        "capacity",
        help="find the most users (closed loop) and the highest arrival rate (open loop, with "
        "--duration) one running server serves within p95 TTFT and latency targets",
    )
    capacity.add_argument("--base-url", default="http://127.0.0.1:8000")
    capacity.add_argument("--server-pid", type=int, default=None)
    capacity.add_argument("--server-log", type=Path, default=None)
    capacity.add_argument("--p95-ttft", type=float, default=10.0, help="target (s), default 10")
    capacity.add_argument("--p95-latency", type=float, default=60.0, help="target (s), default 60")
    capacity.add_argument("--max-users", type=int, default=64, help="largest level probed")
    capacity.add_argument("--min-rate", type=float, default=0.01, help="first open-loop rate")
    capacity.add_argument("--max-rate", type=float, default=10.0, help="largest rate probed")
    capacity.add_argument("--rate-steps", type=int, default=3, help="open-loop bisections")
    _add_load_options(capacity)
    report = sub.add_parser(
        "report", help="rewrite output.txt, plots and tables of run or matrix folders"
    )
    report.add_argument(
        "folders",
        type=Path,
        nargs="+",
        help="folders with result.json, matrix.json or capacity.json",
    )
    return root


# The `bench` extra: plots and the progress bar. Checked before any request is sent, so a
# missing extra is one line at start, not a traceback after the run.
EXTRAS = ("matplotlib", "tqdm")


def missing_extras() -> list[str]:
    return [name for name in EXTRAS if importlib.util.find_spec(name) is None]


def rerender(folders: list[Path]) -> int:
    from bench.capacity import rerender_capacity
    from bench.matrix import rerender_matrix
    from bench.report import render

    for folder in folders:
        if (folder / "capacity.json").exists():
            rerender_capacity(folder)
        elif (folder / "matrix.json").exists():
            rerender_matrix(folder)
        elif (folder / "result.json").exists():
            render(folder)
        else:
            print(
                f"gptapi-bench: error: {folder} has no result.json, matrix.json or capacity.json",
                file=sys.stderr,
            )
            return 2
        print(f"rewrote {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if missing := missing_extras():
        print(
            f"gptapi-bench: error: missing {', '.join(missing)}: install the bench extra, "
            "pip install 'gptapi[bench]' (or `make install`)",
            file=sys.stderr,
        )
        return 2
    if args.command == "report":
        return rerender(args.folders)
    if args.command in ("run", "capacity") and not args.api_key:
        print("gptapi-bench: error: --api-key or GPTAPI_API_KEY is required", file=sys.stderr)
        return 2
    try:
        parse_mix(args.mix)
    except ValueError as exc:
        print(f"gptapi-bench: error: {exc}", file=sys.stderr)
        return 2
    out = args.out or default_out()
    if args.command == "matrix":
        from bench.matrix import run_matrix

        return run_matrix(args, out)
    if args.command == "capacity":
        from bench.capacity import run_capacity

        return run_capacity(args, out)
    pids = find_server_pids(args.base_url, args.server_pid)
    config = load_config(args, args.base_url, args.api_key, args.users)
    result = execute(config, out, pids=pids, server_log=args.server_log)
    s = result["summary"]
    print(
        f"{s['ok']}/{s['requests']} ok, errors {s['errors'] or 'none'}, "
        f"{s['output_tokens_per_s']:.1f} output tok/s; wrote {out}/output.txt"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
