import threading
import time

import httpx

from tests.conftest import LiveServer


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
    time.sleep(1.0)  # let the decode start
    # Behaviour, not timing: every probe is answered while the generation is still running
    # (the event loop is not blocked by the decode thread).
    with live_server.client(key=None) as c:
        for _ in range(5):
            assert c.get("/health").status_code == 200
            assert worker.is_alive(), "generation ended before the probes: proved nothing"
            time.sleep(0.1)
    worker.join(120)
    assert result["r"].status_code == 200
