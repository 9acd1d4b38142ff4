"""Reading tool calls back out of the model's reply, as the text arrives.

The reply is text, then (if the model calls) ``<tool_call>`` blocks in the format ``prompts``
describes, which the grammar of ``api.tools`` held the calls to. ``ToolCallReader`` splits it
into events: content text, the start of a call (its id and name), fragments of its arguments.
Streams send them as OpenAI's deltas; a whole response is the same events collected, so both
always agree. Text that only might be the start of a ``<tool_call>`` is held until it is known;
whitespace before a call is not content.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from gptapi.prompts import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

# What the grammar writes between "<tool_call>" and the arguments.
_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_-]{1,64})"\s*,\s*"arguments"\s*:\s*')
_MAX_HEADER = 256  # longer without a match: not a call (text the grammar did not write)


@dataclass
class Content:
    text: str


@dataclass
class CallStart:
    index: int  # among this reply's calls
    id: str
    name: str


@dataclass
class Arguments:
    index: int
    text: str


Event = Content | CallStart | Arguments


@dataclass
class Call:
    id: str
    name: str
    arguments: str = ""
    complete: bool = False


@dataclass
class ToolCallReader:
    """One choice's reply, fed as it is generated."""

    calls: list[Call] = field(default_factory=list)
    content: str = ""  # released content so far
    _buffer: str = ""
    _state: str = "text"  # text | header | arguments | closing
    _depth: int = 0
    _in_string: bool = False
    _escaped: bool = False

    def feed(self, text: str) -> list[Event]:
        self._buffer += text
        events: list[Event] = []
        while True:
            before = (self._state, len(self._buffer))
            events += getattr(self, f"_{self._state}")()
            if (self._state, len(self._buffer)) == before:
                return events

    def close(self) -> list[Event]:
        """The end of the reply: what was held is released (a call cut off stays incomplete)."""
        rest, self._buffer = self._buffer, ""
        if self._state == "text":
            if self.calls and TOOL_CALL_OPEN.startswith(rest.strip()):
                return []  # the start of one more call, cut off
            return self._release(rest)
        if self._state == "header":  # cut off before its name: no call, and not content
            return []
        if self._state == "closing":
            self.calls[-1].complete = True
        return []

    def _release(self, text: str) -> list[Event]:
        if not text:
            return []
        if not self.content and self.calls and not text.strip():
            return []
        self.content += text
        return [Content(text)]

    def _text(self) -> list[Event]:
        at = self._buffer.find(TOOL_CALL_OPEN)
        if at >= 0:
            before, self._buffer = self._buffer[:at], self._buffer[at + len(TOOL_CALL_OPEN) :]
            self._state = "header"
            return self._release(before.rstrip())
        # Hold what may be the start of "<tool_call>", and trailing whitespace (it may come
        # before a call, where it is not content).
        keep = _partial_suffix(self._buffer, TOOL_CALL_OPEN)
        ready = self._buffer[: len(self._buffer) - keep]
        text = ready.rstrip()
        self._buffer = self._buffer[len(text) :]
        return self._release(text)

    def _header(self) -> list[Event]:
        match = _HEADER.match(self._buffer)
        if match is None:
            if len(self._buffer) > _MAX_HEADER or "}" in self._buffer:
                self._state = "text"  # not a call: the tag is text, the rest is read again
                return self._release(TOOL_CALL_OPEN)
            return []
        self._buffer = self._buffer[match.end() :]
        call = Call(f"call_{secrets.token_hex(12)}", match.group(1))
        self.calls.append(call)
        self._state, self._depth, self._in_string, self._escaped = "arguments", 0, False, False
        return [CallStart(len(self.calls) - 1, call.id, call.name)]

    def _arguments(self) -> list[Event]:
        """Up to the end of the arguments' JSON value (depth and strings tracked)."""
        end = None
        for i, char in enumerate(self._buffer):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    end = i + 1
                    break
        taken = self._buffer if end is None else self._buffer[:end]
        self._buffer = self._buffer[len(taken) :]
        if end is not None:
            self._state = "closing"
        call = self.calls[-1]
        text = taken if call.arguments else taken.lstrip()
        call.arguments += text
        return [Arguments(len(self.calls) - 1, text)] if text else []

    def _closing(self) -> list[Event]:
        at = self._buffer.find(TOOL_CALL_CLOSE)
        if at < 0:
            return []
        self._buffer = self._buffer[at + len(TOOL_CALL_CLOSE) :]
        self.calls[-1].complete = True
        self._state = "text"
        return []


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is a beginning of ``marker``."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0
