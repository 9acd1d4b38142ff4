"""The last requests of this process, in memory, for ``GET /monitor/requests``: the request
log's own entries (``edge.context`` hands each one over as it writes its line), bounded by
``GPTAPI_MONITOR_RECENT_REQUESTS``.

Only the fields named in ``FIELDS`` are kept: counts, timings, statuses, the memory snapshots,
and the key's id (8 hex chars of its digest). Never a prompt or an output (``GPTAPI_LOG_TEXT``
puts those in the log's ``text`` field, which is left out) and never a key.

Each process keeps its own: with ``--workers N`` a request shows in the ring of the worker
that served it only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

# What a kept entry holds: the request log's fields but its text (edge/context.py ``_entry``).
# An allow-list, so a field added to the log later stays out until it is named here.
FIELDS: tuple[str, ...] = (
    "timestamp", "request_id", "key_id", "route", "method", "task", "status", "end_reason",
    "prompt_tokens", "cached_tokens", "completion_tokens", "queue_ms", "ttft_ms", "forecast_ms",
    "total_ms", "tokens_per_s", "busy_slots_at_admission", "queue_depth_at_admission",
    "memory_start", "memory_end", "memory_delta",
)  # fmt: skip


class RecentRequests:
    """A ring of the last ``capacity`` request-log entries that had a valid key (requests
    refused before authentication belong to no key: no key holder is shown them). Filled and
    read on the event loop only, so no lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)

    def add(self, entry: dict[str, Any]) -> None:
        if self.capacity == 0 or entry.get("key_id") is None:
            return
        self._entries.append({name: entry.get(name) for name in FIELDS})

    def latest(self, limit: int, visible: Callable[[str], bool]) -> list[dict[str, Any]]:
        """Up to ``limit`` entries, newest first, of the keys ``visible`` accepts."""
        found: list[dict[str, Any]] = []
        for entry in reversed(self._entries):
            if len(found) >= limit:
                break
            if visible(entry["key_id"]):
                found.append(entry)
        return found

    def __len__(self) -> int:
        return len(self._entries)
