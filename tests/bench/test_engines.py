from bench.engines import percentile, prompt


def test_every_request_gets_a_distinct_prompt() -> None:
    prompts = [prompt(i) for i in range(1000)]
    assert len(set(prompts)) == 1000


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5
    assert percentile([7.0], 0.95) == 7.0
