"""Engine comparison: aggregate output tokens/s, latency and time to first token at several
concurrency levels, for gptapi's batched engine, its pool engine, a one-at-a-time baseline and,
when given, llama.cpp's own C++ ``llama-server`` and llama-cpp-python's own server — same model,
same threads, one run. The parts live in ``bench/compare/``.

    python -m bench.engines --users 1,4,10,40 --llama-server /path/to/llama-server --out DIR

Closed loop: each simulated user sends its next request when its last one ends; every request
has a distinct prompt; temperature 0; a fixed number of new tokens. Not a test: nothing asserts.
Results go to DIR/engines-<timestamp>/ (default bench/results/, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.compare.levels import Level
from bench.compare.rounds import run_interleaved, run_target
from bench.compare.tables import HEADER, format_row, paired_summary, plot_paired
from bench.compare.targets import default_model, targets
from bench.report import cpu_model
from bench.runner import RESULTS_DIR, timestamp
from bench.workloads import WORKLOADS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument("--users", default="1,4,10,40", help="concurrency levels")
    parser.add_argument(
        "--requests-per-user",
        default="1:5,4:3,10:3,40:1",
        help="users:requests pairs; levels not listed send 1 request per user",
    )
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="distinct",
        help="distinct: no two prompts share more than a few tokens; shared-instructions: "
        "one ~350-token instruction prefix, then a distinct short question; mixed-long: every "
        "4th request a distinct ~1,300-token document, the others distinct short prompts",
    )
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=512, help="context per slot")
    parser.add_argument("--slots", default="16", help="slot counts for the batched engine")
    parser.add_argument("--llama-server", type=Path, help="llama-server binary to compare with")
    parser.add_argument("--server-np", default="1,10,16", help="llama-server -np values")
    parser.add_argument(
        "--llama-cpp-python",
        type=Path,
        help="a Python with llama-cpp-python[server] installed: also run its own server "
        "(python -m llama_cpp.server, one context; not streamed)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE,...",
        help="also run the batched engine with these GPTAPI_* settings (repeatable)",
    )
    parser.add_argument("--only", help="comma-separated substrings of engine names to run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="more than 1: start all engines at once and alternate them round by round "
        "(paired comparison; the first llama-server engine chosen is the reference)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="stream every response: client-side TTFT and inter-token latency",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="with --stream: both engines get the prompt as raw text, no chat template "
        "(gptapi through /v1/completions); for the heavy twin, whose random weights answer "
        "a chat-rendered prompt with whitespace only",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help=f"folder to write the run's engines-<timestamp>/ into (default {RESULTS_DIR}/, "
        "git-ignored; docs/results only when named here)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.raw and not args.stream:
        parser.error("--raw needs --stream")
    if args.llama_cpp_python and args.stream:
        parser.error("--llama-cpp-python runs are not streamed (its stream has no usage)")
    args.slots = [int(s) for s in args.slots.split(",")]
    args.server_np = [int(s) for s in args.server_np.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    users_levels = [int(u) for u in args.users.split(",")]
    per_user = {u: 1 for u in users_levels}
    for pair in args.requests_per_user.split(","):
        u, _, k = pair.partition(":")
        per_user[int(u)] = int(k)
    model_name = (args.model or default_model()).name
    stamp = timestamp()
    out_dir = args.out / f"engines-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    chosen = targets(args)
    if args.only:
        keys = args.only.split(",")
        chosen = [t for t in chosen if any(k in t.name for k in keys)]
    summary: list[str] = []
    if args.rounds > 1:
        by_engine = run_interleaved(
            chosen, users_levels, per_user, args.new_tokens, args.rounds, out_dir / "logs"
        )
        results = {name: [asdict(lv) for lv in lvs] for name, lvs in by_engine.items()}
        reference = next((t.name for t in chosen if t.kind == "llama-server"), chosen[0].name)
        summary = ["", *paired_summary(by_engine, reference)]
        title = f"{model_name}, {args.workload}, {args.new_tokens} new tokens"
        plots = plot_paired(out_dir, title, by_engine, reference)
        summary += ["", *(f"![{p.stem}]({p.name})" for p in plots)]
        print("\n".join(summary), flush=True)
    for target in chosen if args.rounds == 1 else []:
        measured = run_target(target, users_levels, per_user, args.new_tokens, out_dir / "logs")
        results[target.name] = [asdict(lv) for lv in measured]
    meta = {
        "date": stamp,
        "command": "python -m bench.engines "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.machine()}",
        "model": model_name,
        "new_tokens": args.new_tokens,
        "threads": args.threads,
        "ctx_per_slot": args.ctx,
        "rounds": args.rounds,
        "workload": args.workload,
        "stream": args.stream,
        "raw": args.raw,
    }
    (out_dir / "engines.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        f"# Engine comparison — {model_name}",
        "",
        *(f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in meta.items()),
        "",
        HEADER,
    ]
    for name, levels in results.items():
        lines += [format_row(name, Level(**lv)) for lv in levels]
    lines += summary
    (out_dir / "engines.md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out_dir}/engines.md and engines.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
