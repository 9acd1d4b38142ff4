"""Speeds: the start-up measurement, then the decode steps as served."""

from __future__ import annotations

import pytest

from gptapi.engine import Speeds

IDLE = Speeds(prompt_token_s=0.03, decode_1_s=0.15, decode_full_s=0.40, slots=8)


def test_served_full_and_single_decode_steps_move_the_speeds_toward_what_was_served() -> None:
    speeds = IDLE
    for _ in range(20):  # a loaded server: full steps of 0.55 s, single ones of 0.20 s
        speeds = speeds.after_step(8, 0, 0.55).after_step(1, 0, 0.20)
    assert speeds.decode_full_s == pytest.approx(0.55, rel=1e-3)
    assert speeds.decode_1_s == pytest.approx(0.20, rel=1e-3)
    assert speeds.prompt_token_s == IDLE.prompt_token_s and speeds.slots == 8
    assert speeds.decode_s(4) > IDLE.decode_s(4)


@pytest.mark.parametrize(("decoding", "prompt"), [(8, 16), (4, 0), (0, 128), (1, 1)])
def test_steps_that_carry_prompt_tokens_or_other_counts_leave_them_alone(
    decoding: int, prompt: int
) -> None:
    assert IDLE.after_step(decoding, prompt, 9.0) is IDLE


def test_with_one_slot_a_served_step_is_both_counts() -> None:
    one = Speeds(prompt_token_s=0.03, decode_1_s=0.15, decode_full_s=0.15, slots=1)
    for _ in range(20):
        one = one.after_step(1, 0, 0.30)
    assert one.decode_s(1) == pytest.approx(0.30, rel=1e-3)
    assert one.decode_full_s == pytest.approx(0.30, rel=1e-3)
