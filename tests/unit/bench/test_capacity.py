"""The capacity searches and their pass rule, with probes that need no server."""

from __future__ import annotations

from typing import Any

import pytest

from bench.capacity import meets, search_rate, search_users


def threshold_probe(limit: float, seen: list[float]) -> Any:
    def probe(load: float) -> bool:
        seen.append(load)
        return load <= limit

    return probe


@pytest.mark.parametrize(("limit", "expected"), [(0, 0), (1, 1), (5, 5), (11, 11), (64, 64)])
def test_users_double_until_a_level_fails_then_bisect(limit: int, expected: int) -> None:
    seen: list[float] = []
    assert search_users(threshold_probe(limit, seen), max_users=64) == expected
    assert len(seen) == len(set(seen)), "a level is probed once"
    assert len(seen) <= 14


def test_rates_double_then_bisect_the_given_number_of_steps() -> None:
    seen: list[float] = []
    rate = search_rate(threshold_probe(0.3, seen), min_rate=0.1, max_rate=10, steps=3)
    assert seen[:3] == [0.1, 0.2, 0.4]  # 0.4 fails: between 0.2 and 0.4 three times
    assert rate == pytest.approx(0.275)
    assert search_rate(threshold_probe(0.05, []), min_rate=0.1, max_rate=10, steps=3) == 0.0


def summary(ok: int, requests: int, ttft: float | None, latency: float | None) -> dict[str, Any]:
    return {"requests": requests, "ok": ok, "ttft_s": {"p95": ttft}, "latency_s": {"p95": latency}}


def test_a_probe_passes_only_when_every_request_is_answered_within_both_targets() -> None:
    assert meets(summary(10, 10, 1.0, 5.0), ttft_s=2, latency_s=5)
    assert not meets(summary(9, 10, 1.0, 5.0), ttft_s=2, latency_s=5)  # one refused or failed
    assert not meets(summary(10, 10, 2.5, 5.0), ttft_s=2, latency_s=5)
    assert not meets(summary(10, 10, 1.0, 5.1), ttft_s=2, latency_s=5)
    assert not meets(summary(0, 0, None, None), ttft_s=2, latency_s=5)


def test_no_rate_above_the_largest_asked_for_is_probed() -> None:
    seen: list[float] = []
    assert search_rate(threshold_probe(100, seen), min_rate=1, max_rate=2, steps=3) == 2
    assert seen == [1, 2]
