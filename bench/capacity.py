"""``gptapi-bench capacity``: how many users this server serves within latency targets.

Two searches against one running server, each a series of ordinary load runs ("probes", each
written to its own folder like ``gptapi-bench run``'s):

- closed loop: the most concurrent users (each sends its next request when its answer came)
  for which every request is answered (no refusal, no error) and the p95 TTFT and p95 latency
  meet the targets: users 1, 2, 4, ... until a level fails, then bisection between the last
  level that passed and the first that failed;
- open loop: the highest Poisson arrival rate meeting the same targets over ``--duration``
  seconds: rates doubling from ``--min-rate``, then ``--rate-steps`` bisections.

The answer is one line ("this server serves N users at p95 TTFT <= X s and p95 latency <= Y s,
...") in ``capacity.md``, with every probe's numbers, one plot and ``capacity.json``. One corpus
feeds every probe, so no probe resends another's inputs (the prompt cache would answer them).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.corpus import Corpus
from bench.procs import find_server_pids
from bench.runner import execute, load_config


@dataclass(frozen=True)
class Probe:
    load: float  # users (closed loop) or arrivals per second (open loop)
    requests: int
    ok: int
    refused: int
    p95_ttft_s: float | None
    p95_latency_s: float | None
    output_tokens_per_s: float
    passed: bool
    folder: str


def meets(summary: dict[str, Any], ttft_s: float, latency_s: float) -> bool:
    """Every request answered, and the p95s within the targets."""
    if not summary["requests"] or summary["ok"] < summary["requests"]:
        return False
    ttft, latency = summary["ttft_s"].get("p95"), summary["latency_s"].get("p95")
    return ttft is not None and latency is not None and ttft <= ttft_s and latency <= latency_s


def search_users(probe: Callable[[int], bool], max_users: int) -> int:
    """The most users for which ``probe`` passes (0: not even one), assuming that more users
    never make it pass again: doubling, then bisection."""
    passed, users = 0, 1
    while users <= max_users and probe(users):
        passed, users = users, users * 2
    failed = min(users, max_users + 1)
    while failed - passed > 1:
        middle = (passed + failed) // 2
        if probe(middle):
            passed = middle
        else:
            failed = middle
    return passed


def search_rate(
    probe: Callable[[float], bool], min_rate: float, max_rate: float, steps: int
) -> float:
    """The highest arrival rate for which ``probe`` passes (0: not even ``min_rate``): doubling,
    then ``steps`` bisections."""
    passed, rate = 0.0, min_rate
    while True:
        if rate > max_rate:
            return passed  # every rate up to the largest asked for passed
        if not probe(rate):
            break
        passed, rate = rate, rate * 2
    if passed == 0.0:
        return 0.0
    failed = rate
    for _ in range(steps):
        middle = (passed + failed) / 2
        if probe(middle):
            passed = middle
        else:
            failed = middle
    return passed


def run_capacity(args: argparse.Namespace, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    pids = find_server_pids(args.base_url, args.server_pid)
    corpus = Corpus()
    probes: dict[str, list[Probe]] = {"closed": [], "open": []}

    base = load_config(args, args.base_url, args.api_key, 1)
    per_user = args.requests_per_user if isinstance(args.requests_per_user, int) else 2

    def run(kind: str, load: float, users: int, rate: float | None) -> bool:
        if rate is None:
            config = replace(
                base, users=users, rate=None, duration_s=None, requests_per_user=per_user
            )
        else:
            config = replace(
                base, users=users, rate=rate, duration_s=args.duration, requests_per_user=None
            )
        folder = out / f"{kind}-{load:g}"
        result = execute(
            config, folder, pids=pids, server_log=args.server_log, corpus=corpus, quiet=True
        )
        s = result["summary"]
        passed = meets(s, args.p95_ttft, args.p95_latency)
        probes[kind].append(
            Probe(
                load=load,
                requests=s["requests"],
                ok=s["ok"],
                refused=s.get("refused", 0),
                p95_ttft_s=s["ttft_s"].get("p95"),
                p95_latency_s=s["latency_s"].get("p95"),
                output_tokens_per_s=s["output_tokens_per_s"] or 0.0,
                passed=passed,
                folder=folder.name,
            )
        )
        print(f"{kind} {load:g}: {'pass' if passed else 'fail'} ({s['ok']}/{s['requests']} ok)")
        return passed

    users = search_users(lambda n: run("closed", n, n, None), args.max_users)
    rate = 0.0
    if args.duration:
        rate = search_rate(
            lambda r: run("open", r, args.max_users, r),
            args.min_rate,
            args.max_rate,
            args.rate_steps,
        )
    header = json.loads((out / probes["closed"][0].folder / "result.json").read_text())["header"]
    answer = capacity_line(users, rate, args)
    (out / "capacity.json").write_text(
        json.dumps(
            {
                "answer": answer,
                "users": users,
                "rate_per_s": rate,
                "targets": {"p95_ttft_s": args.p95_ttft, "p95_latency_s": args.p95_latency},
                "header": header,
                "probes": {k: [asdict(p) for p in v] for k, v in probes.items()},
            },
            indent=1,
        )
    )
    (out / "capacity.md").write_text(render(answer, header, probes))
    plot(out / "capacity.png", probes, args.p95_ttft, args.p95_latency, header)
    print(answer)
    return 0


def capacity_line(users: int, rate: float, args: argparse.Namespace) -> str:
    per_user = args.requests_per_user if isinstance(args.requests_per_user, int) else 2
    line = (
        f"this server serves {users} concurrent users at p95 TTFT <= {args.p95_ttft:g} s and "
        f"p95 latency <= {args.p95_latency:g} s (closed loop, {per_user} requests each, "
        f"max_tokens {args.max_tokens}, mix {args.mix})"
    )
    if args.duration:
        line += (
            f"; open loop: {rate:.3g} requests per second (Poisson, {args.duration:g} s per probe)"
        )
    return line


_PER_PROBE = ("users", "requests per user", "arrivals")  # differ per probe: in the table


def rerender_capacity(folder: Path) -> None:
    """capacity.md and capacity.png again from capacity.json (``gptapi-bench report``)."""
    data = json.loads((folder / "capacity.json").read_text())
    probes = {k: [Probe(**p) for p in v] for k, v in data["probes"].items()}
    (folder / "capacity.md").write_text(render(data["answer"], data["header"], probes))
    targets = data["targets"]
    plot(
        folder / "capacity.png",
        probes,
        targets["p95_ttft_s"],
        targets["p95_latency_s"],
        data["header"],
    )


def render(answer: str, header: dict[str, Any], probes: dict[str, list[Probe]]) -> str:
    lines = [f"# Capacity\n\n**{answer}**\n", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in header.items() if k not in _PER_PROBE]
    lines += [
        "",
        "Every probe, in the order run (pass: every request answered and both p95s within "
        "the targets):",
        "",
        "| loop | users or requests/s | ok / requests | refused | p95 TTFT (s) | p95 latency (s) "
        "| output tok/s | pass | folder |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, runs in probes.items():
        for p in runs:
            lines.append(
                f"| {kind} | {p.load:g} | {p.ok} / {p.requests} | {p.refused} | "
                f"{_s(p.p95_ttft_s)} | {_s(p.p95_latency_s)} | {p.output_tokens_per_s:.1f} | "
                f"{'yes' if p.passed else 'no'} | [`{p.folder}`]({p.folder}/output.txt) |"
            )
    return "\n".join(lines) + "\n\n![capacity](capacity.png)\n"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def plot(
    path: Path,
    probes: dict[str, list[Probe]],
    ttft_s: float,
    latency_s: float,
    header: dict[str, Any],
) -> None:
    from bench.plots import _pyplot, short_model

    plt = _pyplot()
    kinds = [k for k in ("closed", "open") if probes[k]]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        runs = sorted(probes[kind], key=lambda p: p.load)
        x = [p.load for p in runs]
        ax.plot(x, [p.p95_latency_s or 0 for p in runs], "o-", label="p95 latency")
        ax.plot(x, [p.p95_ttft_s or 0 for p in runs], "s-", label="p95 TTFT")
        ax.axhline(latency_s, color="C0", ls="--", lw=1, label="latency target")
        ax.axhline(ttft_s, color="C1", ls="--", lw=1, label="TTFT target")
        for p in runs:
            if not p.passed:
                ax.annotate("x", (p.load, p.p95_latency_s or 0), color="red", ha="center")
        ax.set_xlabel("concurrent users" if kind == "closed" else "arrivals per second")
        ax.set_ylabel("seconds")
        ax.set_title(f"{kind} loop (x: failed probe)", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"Capacity: {short_model(header)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
