"""JSON-lines logs: one line per request (``requests.jsonl``) and periodic memory samples
(``memory.jsonl``), both size-capped and rotated.

Writing never blocks the event loop and never fails a request: lines go through an in-memory
queue to a writer thread (``logging``'s QueueHandler/QueueListener); a full disk or a bad file
costs log lines, not requests.
"""

from __future__ import annotations

import fcntl
import json
import logging
import logging.handlers
import os
import queue
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RequestRecord:
    """Filled in as a request goes through the service; written once when it ends."""

    request_id: str
    route: str
    method: str
    key_id: str | None = None
    task: str | None = None
    end_reason: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None  # prompt tokens not computed (prompt cache or sharing)
    completion_tokens: int | None = None
    queue_ms: float | None = None
    ttft_ms: float | None = None
    forecast_ms: float | None = None  # forecast latency at admission (arrival to last token)
    tokens_per_s: float | None = None
    busy_slots_at_admission: int | None = None
    queue_depth_at_admission: int | None = None
    text: dict[str, str] = field(default_factory=dict)  # only with GPTAPI_LOG_TEXT=1

    # One method per stage, each writing its own fields once; ``edge.context`` writes the line.

    def admitted(self, busy_slots: int, queue_depth: int) -> None:
        self.busy_slots_at_admission, self.queue_depth_at_admission = busy_slots, queue_depth

    def tokenized(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens

    def forecast(self, total_s: float) -> None:
        self.forecast_ms = total_s * 1000

    def started(self, queue_s: float) -> None:
        self.queue_ms = queue_s * 1000

    def first_token(self, ttft_s: float) -> None:
        self.ttft_ms = ttft_s * 1000

    def generated(self, completion_tokens: int, cached_tokens: int, tokens_per_s: float) -> None:
        """What the engine produced, however the request ended (finished, failed, cancelled)."""
        self.completion_tokens, self.cached_tokens = completion_tokens, cached_tokens
        self.tokens_per_s = tokens_per_s

    def child(self, index: int) -> RequestRecord:
        """The record of choice ``index`` of an ``n`` > 1 request: filled in by its own
        sequence, never logged (the request's one line is this record's)."""
        return RequestRecord(
            request_id=f"{self.request_id}/{index}",
            route=self.route,
            method=self.method,
            key_id=self.key_id,
            task=self.task,
        )

    def end(self, reason: str) -> None:
        """The request's one end reason: the first one reported (a finish reason, an error
        code, ``client_stalled``); what follows from it (the error response it becomes) does
        not overwrite it."""
        if self.end_reason is None:
            self.end_reason = reason


class _CappedFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler, made safe for several processes writing one file (``--workers``)
    and with ``backupCount=0`` meaning "keep no old lines".

    Every write, and the rollover it may cause, happens under an exclusive ``flock`` on the log
    directory (no lock file to leave behind); a process whose file another one rotated away
    reopens it first. Without this each worker rotated on its own view of the size and renamed
    files under the others, which kept writing into the renamed ones (~27 % of the history lost
    in a two-process test).
    """

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._lock = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        except OSError:
            self.handleError(record)
            return
        try:
            self._reopen_if_rotated()
            super().emit(record)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def _reopen_if_rotated(self) -> None:
        if self.stream is None:
            return
        try:
            current = os.stat(self.baseFilename).st_ino
        except FileNotFoundError:
            current = -1
        if current != os.fstat(self.stream.fileno()).st_ino:
            self.stream.close()
            self.stream = self._open()

    def close(self) -> None:
        super().close()
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def doRollover(self) -> None:
        if self.backupCount > 0:
            super().doRollover()
            return
        if self.stream:
            self.stream.close()
        self.stream = open(self.baseFilename, "w", encoding=self.encoding)  # noqa: SIM115


class JsonLinesLog:
    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # A logger of our own (not propagated) so these lines never reach the console log.
        self._logger = logging.getLogger(f"gptapi.jsonl.{path.resolve()}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handler = _CappedFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue_handler = logging.handlers.QueueHandler(self._queue)
        self._logger.addHandler(self._queue_handler)
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._listener.start()

    def write(self, entry: dict[str, Any]) -> None:
        try:
            self._logger.info(json.dumps(entry, separators=(",", ":"), default=str))
        except Exception:  # a log line is never worth a failed request
            logging.getLogger("gptapi").debug("could not write a log line", exc_info=True)

    def close(self) -> None:
        self._listener.stop()  # flushes what is queued
        self._logger.removeHandler(self._queue_handler)
        for handler in self._listener.handlers:
            handler.close()
