"""Schema-driven fuzzing with schemathesis against a live server on the real model, with a
valid key: a fixed number of generated requests per operation, valid and invalid, must never
get a 5xx, and every response must match the published OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import API_KEY, LiveServer, start_server, stop_server

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Tiny outputs keep each generated request cheap; limits stay as a user would set them.
    server = start_server(
        tmp_path_factory.mktemp("fuzz"),
        env={
            "GPTAPI_MAX_TOKENS_LIMIT": "4",
            "GPTAPI_DEFAULT_MAX_TOKENS": "4",
            "GPTAPI_N_CTX": "512",
            "GPTAPI_SLOTS": "4",
        },
    )
    yield server
    stop_server(server)


def test_no_5xx_and_every_response_matches_the_schema(fuzz_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9  # tasks, /v1, health, ready, metrics: nothing silently skipped
    for operation in operations:
        _fuzz(operation, GenerationMode.POSITIVE)
        if operation.label.startswith("POST "):  # only bodies can be made invalid
            _fuzz(operation, GenerationMode.NEGATIVE)


def _fuzz(operation: Any, mode: GenerationMode) -> None:
    # Negative cases break the schema on purpose: they must get 4xx, never 5xx.
    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,  # the same examples every run: CI time and results are repeatable
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_headers_conformance,
                response_schema_conformance,
            ],
        )

    check()
