import threading
import time

import httpx

from tests.conftest import LiveServer
from tests.helpers import wait_for


def test_health_and_ready_need_no_key(live_server: LiveServer) -> None:
    with live_server.client(key=None) as c:
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "model": "Gemma 3 270m",
        "engine": "batched",
        "slots": 8,
        "busy_slots": 0,
        "queued": 0,
    }


def test_health_answers_while_a_long_generation_runs(live_server: LiveServer) -> None:
    result: dict[str, httpx.Response] = {}

    def long_generation() -> None:
        with live_server.client() as c:
            result["r"] = c.post(
                "/generate-text",
                json={"prompt": "Write a long story about a dragon.", "max_tokens": 200},
            )

    worker = threading.Thread(target=long_generation)
    worker.start()
    wait_for(live_server, busy=1, queued=0)  # the decode has started
    # Behaviour, not timing: every probe is answered while the generation is still running
    # (the event loop is not blocked by the decode thread).
    with live_server.client(key=None) as c:
        for _ in range(5):
            assert c.get("/health").status_code == 200
            assert worker.is_alive(), "generation ended before the probes: proved nothing"
            time.sleep(0.1)
    worker.join(120)
    assert result["r"].status_code == 200


def test_ready_turns_503_when_the_scheduler_thread_is_gone() -> None:
    """Real engine, in process: the scheduler thread is stopped under the running app (as a
    bug that ended it would), and /ready and new requests say so instead of hanging."""
    from fastapi.testclient import TestClient

    from gptapi.app import create_app
    from gptapi.config import Settings
    from tests.conftest import API_KEY

    app = create_app(Settings(api_keys=API_KEY, slots=2, n_ctx=1024, mem_sample_s=0))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(app) as c:
        deadline = time.monotonic() + 120
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.1)
        good = {"prompt": "The capital of France is", "max_tokens": 2}
        assert c.post("/generate-text", json=good, headers=auth).status_code == 200
        scheduler = app.state.gateway.engine._schedulers[0]
        scheduler._stopping.set()
        scheduler._thread.join(30)
        ready = c.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "engine_unavailable"
        refused = c.post("/generate-text", json=good, headers=auth)
        assert refused.status_code == 503
