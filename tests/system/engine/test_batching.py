"""Continuous batching on the real model: many sequences in one context, no cross-talk."""

import asyncio

import httpx

from tests.conftest import API_KEY, LiveServer
from tests.helpers import KEYWORDS, prompt_for


async def ask_all(base_url: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120
    ) as c:
        responses = await asyncio.gather(
            *(
                c.post(
                    "/generate-text",
                    json={"prompt": prompt_for(w), "max_tokens": 8, "stop": ["\n"]},
                )
                for w in KEYWORDS
            )
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return [r.json() for r in responses]


def test_eight_concurrent_requests_each_get_their_own_answer(live_server: LiveServer) -> None:
    first = asyncio.run(ask_all(live_server.base_url))
    for word, body in zip(KEYWORDS, first, strict=True):
        text = str(body["text"])
        assert word in text, (word, text)
        others = [w for w in KEYWORDS if w != word]
        assert not any(o in text for o in others), (word, text)

    second = asyncio.run(ask_all(live_server.base_url))
    assert [b["text"] for b in second] == [b["text"] for b in first]
