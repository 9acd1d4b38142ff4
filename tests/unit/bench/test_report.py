"""The run summary's accounting: refused at once vs taken on, goodput, forecast error."""

from __future__ import annotations

from bench.load import RequestResult
from bench.report import summarize, summary_lines


def result(
    status: int, kind: str | None, latency: float, forecast_ms: float | None = None
) -> RequestResult:
    server = {"forecast_ms": forecast_ms} if forecast_ms else None
    return RequestResult(
        user=0, task="generate", input_id="p1", status=status, error_kind=kind, start_s=0.0,
        latency_s=latency, ttft_s=latency / 2, prompt_tokens=10, completion_tokens=4,
        tokens_per_s=None, request_id="r", server=server,
    )  # fmt: skip


def test_refusals_are_not_counted_as_accepted_and_timeouts_lower_the_goodput() -> None:
    results = [
        result(200, None, 10.0, forecast_ms=8000),
        result(200, None, 12.0, forecast_ms=12000),
        result(503, "server_busy:deadline_unmeetable", 0.02),
        result(504, "server_timeout", 300.0),
    ]
    s = summarize(results, [], wall_s=300)
    assert s["refused"] == 1
    assert s["goodput"] == 2 / 3  # 2 of the 3 taken on finished
    assert s["refusal_latency_s"]["max"] == 0.02
    assert s["forecast_ratio"]["max"] == 1.25
    line = next(x for x in summary_lines(s) if x.startswith("refused"))
    assert "refused: 1 (1 within 1 s, slowest 20ms); goodput 0.67" in line


def test_a_stream_that_ends_with_an_error_event_is_not_an_answer() -> None:
    from bench.load import classify

    timed_out = {"error": {"code": "request_timeout", "type": "timeout_error"}}
    assert classify(200, timed_out, None) == "stream_error:request_timeout"
    assert classify(200, {"usage": {"completion_tokens": 4}}, None) is None
    assert classify(200, None, None) is None
    results = [
        result(200, None, 10.0),
        result(200, "stream_error:request_timeout", 300.0),
        result(200, "stream_error:deadline_unmeetable", 20.0),  # dropped while queued
    ]
    s = summarize(results, [], wall_s=300)
    assert s["ok"] == 1 and s["refused"] == 1 and s["refused_within_1s"] == 0
    assert s["goodput"] == 0.5
