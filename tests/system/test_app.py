"""The app factory's lifespan with the real engine: background load, /ready flip, load failure."""

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from gptapi.app import create_app, load_llama_engine
from gptapi.config import Settings
from gptapi.engine import Engine
from tests.conftest import API_KEY


def test_ready_is_503_until_the_model_is_loaded_then_200() -> None:
    gate = threading.Event()

    def gated_loader(settings: Settings) -> Engine:
        gate.wait(60)
        return load_llama_engine(settings)

    app = create_app(Settings(api_keys=API_KEY), engine_factory=gated_loader)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        not_ready = c.get("/ready")
        assert not_ready.status_code == 503
        assert not_ready.headers["retry-after"]
        assert not_ready.json()["error"]["code"] == "model_not_ready"
        early = c.post("/generate-text", json={"prompt": "Hi", "max_tokens": 1}, headers=auth)
        assert early.status_code == 503
        gate.set()
        deadline = time.monotonic() + 60
        while c.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/ready").status_code == 200
        r = c.post("/generate-text", json={"prompt": "Hi", "max_tokens": 2}, headers=auth)
        assert r.status_code == 200


def test_load_failure_is_reported_once_and_ready_stays_503(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_text("not a model")
    reported: list[str] = []
    app = create_app(Settings(api_keys=API_KEY, model_path=bogus), on_fatal=reported.append)
    with TestClient(app) as c:
        deadline = time.monotonic() + 30
        while not reported and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/ready").status_code == 503
    assert reported == [f"{bogus}: not a GGUF file (starts with b'not ')"]
