"""The one percentile every bench table uses (linear interpolation between ranks)."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of ``values``; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def spread(values: Sequence[float]) -> tuple[float, float, float] | None:
    """min / median / max, the way paired ratios are reported."""
    median = percentile(values, 0.5)
    return None if median is None else (min(values), median, max(values))
