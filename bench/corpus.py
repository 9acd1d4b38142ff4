"""The inputs simulated users send: bench/data/, written for this project. Every request of a run
gets a different input (cycling through the corpus only after it is exhausted)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
TASK_PATHS = {
    "generate": "/generate-text",
    "summarize": "/summarize-text",
    "answer": "/answer-question",
}


@dataclass(frozen=True)
class TaskInput:
    task: str
    input_id: str
    path: str
    body: dict[str, Any]


class Corpus:
    def __init__(self, data_dir: Path = DATA) -> None:
        self.prompts = json.loads((data_dir / "prompts.json").read_text())
        self.passages = json.loads((data_dir / "passages.json").read_text())
        self.qa = json.loads((data_dir / "qa.json").read_text())
        self._next = {"generate": 0, "summarize": 0, "answer": 0}

    def _take(self, task: str) -> TaskInput:
        # A shared cursor per task: concurrent users never send the same input until the
        # corpus wraps around.
        i = self._next[task]
        self._next[task] += 1
        if task == "generate":
            item = self.prompts[i % len(self.prompts)]
            body: dict[str, Any] = {"prompt": item["prompt"]}
        elif task == "summarize":
            item = self.passages[i % len(self.passages)]
            body = {"text": item["text"]}
        else:
            item = self.qa[i % len(self.qa)]
            body = {"question": item["question"], "context": item["context"]}
        return TaskInput(task, item["id"], TASK_PATHS[task], body)

    def pick(self, mix: dict[str, float], rng: random.Random) -> TaskInput:
        """The next unused input of a task drawn by the mix's weights."""
        tasks = [t for t, w in mix.items() if w > 0]
        weights = [mix[t] for t in tasks]
        return self._take(rng.choices(tasks, weights)[0])


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in TASK_PATHS:
            raise ValueError(f"unknown task {name!r} in --mix (use {', '.join(TASK_PATHS)})")
        mix[name] = float(weight or 1)
    if not any(w > 0 for w in mix.values()):
        raise ValueError("--mix needs at least one task with a positive weight")
    return mix
