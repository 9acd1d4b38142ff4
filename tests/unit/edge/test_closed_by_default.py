"""Closed by default: every route but the listed open ones needs a key, proved by walking the
routes the app really serves (a new route is covered without anyone remembering to)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gptapi.edge import OPEN_PATHS
from tests.helpers import AUTH, assert_error, serve_fake

# The list a reviewer reads: what anyone may call without a key (the playground's files are
# each listed by name in gptapi.web; the page holds no data and sends a key with every call).
EXPECTED_OPEN = {
    "/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
    "/", "/static/playground.css", "/static/api.js", "/static/sampling.js",
    "/static/playground.js", "/static/chat.js", "/static/tasks.js", "/static/monitor.js",
    "/static/plot.js",
}  # fmt: skip


def served_routes(routes: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, into included routers too (FastAPI >= 0.16x includes
    routers lazily, as objects that hold the original router)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from served_routes(inner.routes)
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                yield method, route.path


@pytest.fixture()
def client() -> Iterator[TestClient]:
    with serve_fake() as c:
        yield c


def test_the_open_paths_are_exactly_the_documented_ones() -> None:
    assert set(OPEN_PATHS) == EXPECTED_OPEN


def test_every_route_but_the_open_ones_refuses_a_request_without_a_key(client: TestClient) -> None:
    routes = sorted(set(served_routes(client.app.router.routes)))  # type: ignore[attr-defined]
    paths = {path for _, path in routes}
    # The walk sees the API itself, not only the docs routes.
    assert {"/generate-text", "/v1/chat/completions", "/v1/models", "/metrics"} <= paths
    for method, path in routes:
        url = path.replace("{", "").replace("}", "")  # a path parameter: any value
        response = client.request(method, url, json={})
        if path in OPEN_PATHS:
            assert response.status_code != 401, (method, path)
        else:
            assert_error(response, 401, "invalid_api_key")
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_path_no_route_serves_is_closed_too(client: TestClient) -> None:
    assert_error(client.post("/admin/anything", json={}), 401, "invalid_api_key")
    assert_error(client.get("/admin/anything", headers=AUTH), 404, "not_found")


def test_metrics_is_open_only_when_the_setting_says_so() -> None:
    with serve_fake(metrics_public=True) as c:
        assert c.get("/metrics").status_code == 200
    with serve_fake() as c:
        assert_error(c.get("/metrics"), 401, "invalid_api_key")
