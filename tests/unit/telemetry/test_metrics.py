"""Prometheus metrics: labelled counters exist at 0 before their first event, so a dashboard
shows 0 rather than "no data"."""

from __future__ import annotations

from prometheus_client import generate_latest

from gptapi.errors import RefusalReason
from gptapi.telemetry.metrics import REFUSAL_REASONS, Metrics
from tests.helpers import metric_values


def test_every_refusal_reason_is_exported_at_zero_from_the_start() -> None:
    values = metric_values(generate_latest(Metrics().registry).decode())
    assert set(REFUSAL_REASONS) == set(RefusalReason.__args__)  # type: ignore[attr-defined]
    for reason in REFUSAL_REASONS:
        assert values[("gptapi_refusals_total", (("reason", reason),))] == 0.0
