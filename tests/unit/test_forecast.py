"""The deadline forecast's arithmetic: start-up speeds, then finished requests; list scheduling."""

from __future__ import annotations

import pytest

from gptapi.engine import Speeds
from gptapi.forecast import Forecast

SPEEDS = Speeds(prompt_token_s=0.01, decode_1_s=0.1, decode_full_s=0.3, slots=5)


def finish(forecast: Forecast, times: int = 1, **kw: float) -> None:
    values: dict[str, float] = {
        "prompt_tokens": 100, "cached_tokens": 0, "completion_tokens": 11, "max_tokens": 11,
        "first_token_s": 1.5, "held_s": 2.5,
    } | kw  # fmt: skip
    for _ in range(times):
        forecast.finished(**values)  # type: ignore[arg-type]


def test_nothing_is_forecast_without_speeds_or_three_finished_requests() -> None:
    forecast = Forecast()
    for _ in range(3):
        assert not forecast.ready
        finish(forecast)
    assert forecast.ready and forecast.measured


def test_measured_service_is_the_first_token_time_then_the_expected_tokens() -> None:
    forecast = Forecast()
    finish(forecast, 3)  # first token after 1.5 s, then 10 tokens in 1 s
    assert forecast.interval_s == pytest.approx(0.1)
    # In a batch every request waits for the batch's prompts: the first-token time is taken
    # as it came, whatever this request's own prompt.
    assert forecast.service_s(200, 21) == pytest.approx(1.5 + 20 * 0.1)
    forecast.speeds = SPEEDS  # a long prompt alone at the start-up speed is the floor
    assert forecast.service_s(1000, 21) == pytest.approx(10.0 + 20 * 0.1)


def test_clients_that_stop_early_and_cached_prompts_shorten_the_forecast() -> None:
    forecast = Forecast(SPEEDS)
    finish(forecast, 3, completion_tokens=11, max_tokens=44, cached_tokens=50)
    assert forecast.length_share == pytest.approx(0.25)
    assert forecast.cached_share == pytest.approx(0.5)
    assert forecast.service_s(1000, 40) == pytest.approx(500 * 0.01 + 9 * 0.1)


def test_the_best_case_is_one_sequence_at_start_up_speed_or_the_fastest_interval() -> None:
    forecast = Forecast()
    finish(forecast, 2, held_s=1.5 + 1.0)  # 0.1 s a token
    finish(forecast, 2, held_s=1.5 + 5.0)  # 0.5 s a token, under load
    assert forecast.interval_s > 0.1
    assert forecast.service_s(0, 10, fastest=True) == pytest.approx(1.0)
    forecast.speeds = SPEEDS
    assert forecast.service_s(100, 10, fastest=True) == pytest.approx(1.0 + 1.0)


def test_before_anything_finished_start_up_speeds_forecast_a_batch_of_like_requests() -> None:
    forecast = Forecast(SPEEDS)
    assert forecast.ready and not forecast.measured
    assert SPEEDS.decode_s(3) == pytest.approx(0.2)
    assert SPEEDS.decode_s(50) == pytest.approx(0.3)
    # Three like requests: all three prompts, then 10 steps of three tokens.
    assert forecast.service_s(100, 10, batch=3) == pytest.approx(3 * 100 * 0.01 + 10 * 0.2)


def test_a_request_starts_when_the_requests_ahead_have_taken_the_earliest_free_slots() -> None:
    forecast = Forecast()
    assert forecast.start_s([], 2, [5.0]) == 0.0  # a slot stays free
    assert forecast.start_s([3.0, 8.0], 0, []) == 3.0
    # Two ahead: the first takes the slot free at 3 (until 7), the second that one again at 7
    # (until 11); ours gets the slot free at 8.
    assert forecast.start_s([3.0, 8.0], 0, [4.0, 4.0]) == 8.0
    assert forecast.start_s([3.0], 1, [4.0]) == 3.0


def test_a_short_prompt_in_a_batch_waits_for_its_batch_mates_longer_prompts() -> None:
    forecast = Forecast(SPEEDS)
    # A 10-token prompt among 100-token ones: its own and two others', then 10 steps of three.
    assert forecast.service_s(10, 10, batch=3, mates_prompt_tokens=100) == pytest.approx(
        (10 + 2 * 100) * 0.01 + 10 * 0.2
    )
    # Without batch-mates' lengths, they are taken as like its own.
    assert forecast.service_s(10, 10, batch=3) == pytest.approx(3 * 10 * 0.01 + 10 * 0.2)


def test_a_measured_forecast_is_never_faster_than_a_step_of_the_current_batch() -> None:
    forecast = Forecast(SPEEDS)
    finish(forecast, 3)  # 0.1 s a token, measured while requests ran alone
    assert forecast.service_s(100, 21, batch=1) == pytest.approx(1.5 + 20 * 0.1)
    # Five decoding now: a step takes 0.3 s at the current speeds, whatever was measured.
    assert forecast.service_s(100, 21, batch=5) == pytest.approx(1.5 + 20 * 0.3)
