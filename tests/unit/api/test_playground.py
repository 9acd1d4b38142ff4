"""The playground page at / and the monitor's JSON, in process on the fake engine: the page is
public, served with a strict CSP and nothing inline; the monitor endpoints need a key, answer
the documented fields, keep a bounded ring and never show a key or a prompt."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib.resources import files

from fastapi.testclient import TestClient

from gptapi import web
from gptapi.api.monitor import MemoryNow, MonitorStats, PromptCacheNow, RecentRequest
from gptapi.edge import OPEN_PATHS
from gptapi.edge.auth import digest, key_id_of
from gptapi.telemetry.recent import FIELDS, RecentRequests
from tests.conftest import API_KEY
from tests.helpers import AUTH, assert_error, serve_fake

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# What the page's tests and scripts find the page by.
PAGE_IDS = {
    "api-key", "save-key", "forget-key", "key-status", "key-error", "tab-chat", "tab-tasks",
    "tab-monitor", "chat-log", "chat-input", "chat-send", "chat-stop", "chat-usage",
    "task-generate", "task-summarize", "task-answer", "generate-output", "generate-usage",
    "summarize-output", "summarize-usage", "answer-output", "answer-usage", "monitor",
    "stat-busy", "stat-queued", "stat-tps", "stat-rss", "stat-pss", "stat-anon", "stat-file",
    "stat-cache", "plot-memory", "plot-slots", "plot-tps", "plot-cache", "refusals",
    "recent-requests", "temperature", "top-p", "max-tokens", "seed", "json-schema",
}  # fmt: skip
STATS_FIELDS = {
    "pid", "monotonic_s", "timestamp", "model", "slots", "busy_slots", "queued", "memory",
    "prompt_cache", "requests_total", "prompt_tokens_total", "completion_tokens_total",
    "accepted_total", "finished_in_time_total", "refusals",
}  # fmt: skip
MEMORY_FIELDS = {
    "rss_bytes", "rss_anon_bytes", "rss_file_bytes", "rss_shmem_bytes", "rss_peak_bytes",
    "pss_bytes", "uss_bytes", "swap_bytes", "rollup_age_s", "system_available_bytes",
    "tracemalloc_current_bytes", "tracemalloc_peak_bytes", "headroom_bytes", "limit_bytes",
}  # fmt: skip
# Markup from text (model output must go in as textContent), code from strings, other origins,
# and storage that outlives the tab (the key lives in sessionStorage only).
FORBIDDEN_IN_SOURCES = (
    "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
    "http://", "https://", "localStorage", "document.cookie", "console.log",
)  # fmt: skip
SECRET_PROMPT = "Zanzibar-quokka-1187 is the hidden phrase of this prompt."
OTHER_KEY = "other-key-0123456789abcdef"


class PageParser(HTMLParser):
    """Collects what the CSP test checks: scripts, styles, attributes and ids."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = ""
        self.style_elements = 0
        self.bad_attributes: list[tuple[str, str]] = []
        self.loaded: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        for name, value in attrs:
            if name == "style" or name.startswith("on") or "javascript:" in (value or ""):
                self.bad_attributes.append((tag, name))
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
            self.loaded.append(attributes.get("src") or "")
        if tag == "style":
            self.style_elements += 1
        if tag == "link" and attributes.get("rel") == "stylesheet":
            self.loaded.append(attributes.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script += data


def parse_page(client: TestClient) -> PageParser:
    response = client.get("/")
    assert response.status_code == 200
    parser = PageParser()
    parser.feed(response.text)
    return parser


def test_the_page_is_public_with_a_strict_csp_and_nothing_inline(client: TestClient) -> None:
    response = client.get("/")  # no key
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    page = parse_page(client)
    assert page.scripts and all(s.get("src") for s in page.scripts)
    assert page.inline_script.strip() == ""
    assert page.style_elements == 0
    assert page.bad_attributes == []
    assert page.ids >= PAGE_IDS, PAGE_IDS - page.ids
    # Everything it loads is one of its own served files: nothing from another origin.
    assert page.loaded and all(path in web.PAGE_PATHS for path in page.loaded), page.loaded


def test_every_asset_is_public_with_its_type_and_the_page_csp(client: TestClient) -> None:
    for name, media_type in web.ASSETS.items():
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.headers["content-security-policy"] == PAGE_CSP
        assert response.content == (files("gptapi.web") / name).read_bytes()
    # An unlisted name is not a file lookup: closed without a key, 404 with one.
    assert_error(client.get("/static/__init__.py"), 401, "invalid_api_key")
    assert_error(client.get("/static/__init__.py", headers=AUTH), 404, "not_found")
    assert_error(client.get("/static/..%2F__init__.py", headers=AUTH), 404, "not_found")


def test_the_page_paths_are_open_and_nothing_else_was_opened() -> None:
    assert web.PAGE_PATHS <= OPEN_PATHS
    assert {p for p in OPEN_PATHS if p == "/" or p.startswith("/static/")} == web.PAGE_PATHS


def test_every_file_in_the_folder_is_served_and_every_import_is_a_served_file() -> None:
    folder = files("gptapi.web")
    shipped = {p.name for p in folder.iterdir() if p.name.endswith((".html", ".css", ".js"))}
    assert shipped == {web.PAGE, *web.ASSETS}
    for name in web.ASSETS:
        if name.endswith(".js"):
            source = (folder / name).read_text()
            for imported in re.findall(r'from "\./([^"]+)"', source):
                assert imported in web.ASSETS, (name, imported)


def test_scripts_never_parse_text_as_markup_or_fetch_another_origin() -> None:
    folder = files("gptapi.web")
    for name in [web.PAGE, *web.ASSETS]:
        source = (folder / name).read_text()
        for forbidden in FORBIDDEN_IN_SOURCES:
            assert forbidden not in source, (name, forbidden)


def test_the_monitor_needs_a_key(client: TestClient) -> None:
    for path in ("/monitor/stats", "/monitor/requests"):
        assert_error(client.get(path), 401, "invalid_api_key")
        response = client.get(path, headers={"Authorization": "Bearer wrong-key-0123456789"})
        assert_error(response, 401, "invalid_api_key")
        assert response.json()["error"]["message"] == "invalid API key"
        assert client.get(path, headers=AUTH).status_code == 200
        assert "content-security-policy" in client.get(path, headers=AUTH).headers


def test_stats_answer_the_documented_fields(client: TestClient) -> None:
    body = {"prompt": "one two", "max_tokens": 3}
    assert client.post("/generate-text", json=body, headers=AUTH).status_code == 200
    stats = client.get("/monitor/stats", headers=AUTH).json()
    assert set(stats) == STATS_FIELDS == set(MonitorStats.model_fields)
    assert set(stats["memory"]) == MEMORY_FIELDS == set(MemoryNow.model_fields)
    assert set(stats["prompt_cache"]) == set(PromptCacheNow.model_fields)
    assert stats["model"] == "fake"
    assert (stats["slots"], stats["busy_slots"], stats["queued"]) == (2, 0, 0)
    assert stats["completion_tokens_total"] == 3
    assert stats["prompt_tokens_total"] >= 2
    assert stats["accepted_total"] == 1
    assert stats["memory"]["rss_bytes"] > 0
    assert set(stats["refusals"]) >= {"queue_full", "low_memory", "deadline"}
    assert all(count == 0 for count in stats["refusals"].values())


def test_recent_requests_carry_the_log_fields_but_no_key_and_no_text() -> None:
    with serve_fake(log_text=True) as client:  # the log then holds prompts: the ring must not
        response = client.post(
            "/answer-question", json={"question": SECRET_PROMPT, "max_tokens": 2}, headers=AUTH
        )
        request_id = response.headers["x-request-id"]
        client.get("/monitor/stats", headers=AUTH)  # polls are not kept: they would crowd it
        answer = client.get("/monitor/requests", headers=AUTH)
        body = answer.json()
    assert set(body) == {"pid", "capacity", "requests"}
    assert body["capacity"] == 100
    [entry] = body["requests"]
    assert set(entry) == set(FIELDS) == set(RecentRequest.model_fields)
    assert entry["request_id"] == request_id
    assert entry["key_id"] == key_id_of(digest(API_KEY))
    assert (entry["route"], entry["status"], entry["task"]) == ("/answer-question", 200, "answer")
    assert entry["completion_tokens"] == 2
    assert entry["memory_start"]["rss_bytes"] > 0
    assert entry["memory_end"]["rss_bytes"] > 0
    assert "rss_anon_bytes" in entry["memory_delta"]
    assert SECRET_PROMPT not in answer.text and "Zanzibar" not in answer.text
    assert API_KEY not in answer.text


def test_the_ring_keeps_the_newest_up_to_the_setting() -> None:
    with serve_fake(monitor_recent_requests=3) as client:
        ids = [
            client.post(
                "/generate-text", json={"prompt": f"p {i}", "max_tokens": 1}, headers=AUTH
            ).headers["x-request-id"]
            for i in range(5)
        ]
        body = client.get("/monitor/requests", headers=AUTH).json()
        assert body["capacity"] == 3
        assert [e["request_id"] for e in body["requests"]] == ids[:1:-1]  # newest first
        limited = client.get("/monitor/requests?limit=1", headers=AUTH).json()
        assert [e["request_id"] for e in limited["requests"]] == ids[-1:]
        assert_error(client.get("/monitor/requests?limit=0", headers=AUTH), 422, "validation_error")
    with serve_fake(monitor_recent_requests=0) as client:
        client.post("/generate-text", json={"prompt": "p", "max_tokens": 1}, headers=AUTH)
        assert client.get("/monitor/requests", headers=AUTH).json()["requests"] == []


def test_a_key_sees_only_the_requests_of_its_prompt_cache_scope() -> None:
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    for groups, shared in (("", False), ("*", True)):
        keys = f"{API_KEY},{OTHER_KEY}"
        with serve_fake(api_keys=keys, prompt_cache_groups=groups) as client:
            client.post("/generate-text", json={"prompt": "p", "max_tokens": 1}, headers=AUTH)
            seen = client.get("/monitor/requests", headers=other).json()["requests"]
            assert bool(seen) == shared, groups
            own = client.get("/monitor/requests", headers=AUTH).json()["requests"]
            assert [e["key_id"] for e in own] == [key_id_of(digest(API_KEY))]


def test_the_ring_skips_keyless_entries_and_drops_fields_it_does_not_name() -> None:
    ring = RecentRequests(2)
    ring.add({"request_id": "a", "key_id": None, "status": 401})
    ring.add({"request_id": "b", "key_id": "12345678", "text": {"prompt": "secret"}, "new": 1})
    assert len(ring) == 1
    [entry] = ring.latest(10, lambda key_id: True)
    assert set(entry) == set(FIELDS) and entry["request_id"] == "b"
    assert ring.latest(10, lambda key_id: False) == []
    empty = RecentRequests(0)
    empty.add({"request_id": "c", "key_id": "12345678"})
    assert len(empty) == 0


def test_the_refusals_plot_groups_every_refusal_reason_once() -> None:
    from typing import get_args

    from gptapi.errors import RefusalReason

    script = (files("gptapi.web") / "monitor.js").read_text()
    start = script.index("const REFUSAL_GROUPS")
    groups = script[start : script.index("};", start)].split("{", 1)[1]
    named = re.findall(r'"([a-z_]+)"', groups)
    assert sorted(named) == sorted(get_args(RefusalReason))
