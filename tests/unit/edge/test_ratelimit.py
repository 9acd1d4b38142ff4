"""Per-key token budget (prompt + completion), counted in the rate-limit storage: in memory for
one process, in Redis across replicas (fast tier: no model)."""

import pytest

from gptapi.config import Settings
from gptapi.edge.ratelimit import RateLimits
from gptapi.errors import TokenBudgetExhausted


def test_prompt_tokens_are_taken_completions_counted_and_a_prompt_that_does_not_fit_refused() -> (
    None
):
    limits = RateLimits(Settings(token_rate_limit="100/minute"))
    limits.take_tokens("key", 60)
    limits.count_tokens("key", 30)  # 90 used
    with pytest.raises(TokenBudgetExhausted) as refused:
        limits.take_tokens("key", 20)
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    limits.take_tokens("other-key", 100)  # each key has its own budget
    limits.take_tokens("key", 10)  # what is left still fits


def test_replicas_sharing_redis_share_one_token_budget(redis_url: str) -> None:
    settings = Settings(token_rate_limit="100/minute", rate_limit_storage=redis_url)
    replica_a, replica_b = RateLimits(settings), RateLimits(settings)
    replica_a.take_tokens("key", 50)
    replica_b.count_tokens("key", 40)
    with pytest.raises(TokenBudgetExhausted):
        replica_a.take_tokens("key", 20)
    with pytest.raises(TokenBudgetExhausted):
        replica_b.take_tokens("key", 20)
