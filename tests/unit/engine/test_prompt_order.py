"""The order prompts are computed in: shortest remaining first, with aging (engine.prompt_order)."""

from __future__ import annotations

from dataclasses import dataclass

from gptapi.engine.prompt_order import prompt_order


@dataclass
class P:
    name: str
    remaining_prompt: int
    admitted_at: float


def names(pending: list[P], now: float, rate: float | None = 100.0) -> list[str]:
    return [p.name for p in prompt_order(pending, now, rate)]


def test_the_shortest_remaining_prompt_goes_first() -> None:
    docs = [P("doc1", 1500, 0.0), P("doc2", 1400, 0.0), P("question", 20, 0.5)]
    assert names(docs, now=0.5) == ["question", "doc2", "doc1"]


def test_ties_keep_arrival_order() -> None:
    same = [P("a", 300, 1.0), P("b", 300, 1.0), P("c", 300, 1.0)]
    assert names(same, now=2.0) == ["a", "b", "c"]


def test_a_long_prompt_is_not_starved_by_a_stream_of_short_ones() -> None:
    # At 100 tokens/s, a 1,500-token document that has waited 15 s goes ahead of any newcomer.
    doc = P("doc", 1500, 0.0)
    for second in range(60):
        newcomer = P(f"q{second}", 20, float(second))
        first = names([doc, newcomer], now=float(second))[0]
        if second >= 15:
            assert first == "doc", second
        elif second < 14:
            assert first.startswith("q"), second


def test_an_unmeasured_machine_still_ages_prompts() -> None:
    doc, late = P("doc", 1000, 0.0), P("q", 10, 100.0)
    assert names([doc, late], now=100.0, rate=None)[0] == "doc"
