"""The deadline forecast's arithmetic: rates learned token by token, list scheduling."""

from __future__ import annotations

import pytest

from gptapi.engine import Speeds
from gptapi.forecast import Forecast


def measured(interval_s: float = 0.1, gaps: int = 8) -> Forecast:
    forecast = Forecast()
    for _ in range(gaps):
        forecast.gap(interval_s)
    # 100 prompt tokens took 1.4 s beyond the first step.
    forecast.first_token(prompt_tokens=100, cached_tokens=0, seconds=1.4 + interval_s)
    return forecast


def test_nothing_is_forecast_before_a_first_token_and_eight_gaps() -> None:
    forecast = Forecast()
    forecast.first_token(100, 0, 1.5)
    for _ in range(7):
        forecast.gap(0.1)
        assert not forecast.ready
    forecast.gap(0.1)
    assert forecast.ready
    assert not measured(gaps=0).ready


def test_service_is_the_prompt_at_its_rate_then_the_expected_tokens_at_the_interval() -> None:
    forecast = measured()
    assert forecast.interval_s == pytest.approx(0.1)
    assert forecast.prefill_s_per_token == pytest.approx(0.014)
    assert forecast.service_s(200, 21) == pytest.approx(200 * 0.014 + 21 * 0.1)


def test_a_delta_of_several_tokens_counts_as_that_many_gaps_of_its_share() -> None:
    forecast = Forecast()
    forecast.gap(0.6, tokens=3)
    assert forecast.interval_s == pytest.approx(0.2)


def test_clients_that_stop_early_and_cached_prompts_shorten_the_forecast() -> None:
    forecast = measured()
    forecast.finished(completion_tokens=0, max_tokens=40)  # length share 1 -> 0.8
    forecast.first_token(prompt_tokens=100, cached_tokens=100, seconds=0.1)
    assert forecast.length_share == pytest.approx(0.8)
    assert forecast.cached_share == pytest.approx(0.2)
    expected = 100 * 0.8 * forecast.prefill_s_per_token + 40 * 0.8 * 0.1  # type: ignore[operator]
    assert forecast.service_s(100, 40) == pytest.approx(expected)


def test_the_fastest_recent_gap_bounds_the_best_case() -> None:
    forecast = measured(interval_s=0.5)
    forecast.gap(0.1)  # one step with no prompt chunk in it
    assert forecast.interval_s > 0.4
    assert forecast.service_s(0, 10, fastest=True) == pytest.approx(1.0)


def test_a_request_starts_when_the_requests_ahead_have_taken_the_earliest_free_slots() -> None:
    forecast = Forecast()
    assert forecast.start_s([], 2, [5.0]) == 0.0  # a slot stays free
    assert forecast.start_s([3.0, 8.0], 0, []) == 3.0
    # Two ahead: the first takes the slot free at 3 (until 7), the second that one again at 7
    # (until 11); ours gets the slot free at 8.
    assert forecast.start_s([3.0, 8.0], 0, [4.0, 4.0]) == 8.0
    assert forecast.start_s([3.0], 1, [4.0]) == 3.0


SPEEDS = Speeds(prompt_token_s=0.01, decode_1_s=0.1, decode_full_s=0.3, slots=5)


def test_before_anything_is_measured_start_up_speeds_forecast_a_batch_of_like_requests() -> None:
    forecast = Forecast(SPEEDS)
    assert forecast.ready and not forecast.measured
    assert SPEEDS.decode_s(3) == pytest.approx(0.2)
    assert SPEEDS.decode_s(50) == pytest.approx(0.3)
    # Three like requests: all three prompts, then 10 steps of three tokens.
    assert forecast.service_s(100, 10, batch=3) == pytest.approx(3 * 100 * 0.01 + 10 * 0.2)
    assert forecast.service_s(100, 10, batch=3, fastest=True) == pytest.approx(1.0 + 1.0)


def test_what_is_measured_here_replaces_the_start_up_speeds() -> None:
    forecast = Forecast(SPEEDS)
    for _ in range(8):
        forecast.gap(1.0)
    forecast.first_token(prompt_tokens=10, cached_tokens=0, seconds=1.0)
    # The first gaps of a burst are biased by prompts computed beside them: start-up speeds
    # stay until requests have finished.
    for _ in range(3):
        assert not forecast.measured
        forecast.finished(completion_tokens=10, max_tokens=10)
    assert forecast.measured
    assert forecast.service_s(10, 10, batch=5) == pytest.approx(10.0)
