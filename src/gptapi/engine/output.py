"""Turning a stream of token bytes into text: UTF-8 safe, stop strings honoured.

Engine-independent so every engine ends sequences the same way.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class OutputText:
    """Accumulates token pieces; never releases half a UTF-8 character or half a stop string."""

    def __init__(self, stop: Sequence[str], *, skip_leading_whitespace: bool = False) -> None:
        # Base models often open an answer with blank lines; skipping them keeps a "\n" stop
        # string from ending the answer before it starts.
        self._skip_leading_whitespace = skip_leading_whitespace
        self._stop = tuple(s for s in stop if s)
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._released = 0
        self.stopped = False

    @property
    def text(self) -> str:
        """Text released so far (excludes any stop string and held-back tail)."""
        return self._text[: self._released]

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the newly releasable text."""
        if self.stopped:
            return ""
        self._text += self._decoder.decode(piece)
        if self._skip_leading_whitespace and self._released == 0:
            self._text = self._text.lstrip()
        search_from = max(0, self._released - self._longest_stop)
        cut = min(
            (i for i in (self._text.find(s, search_from) for s in self._stop) if i >= 0),
            default=-1,
        )
        if cut >= 0:
            self.stopped = True
            self._text = self._text[:cut]
            return self._release(cut)
        return self._release(len(self._text) - self._held_tail())

    def end_stops(self) -> None:
        """Stop strings no longer apply: what follows is held to a grammar (a tool call), and a
        stop string inside it would cut the call short."""
        self._stop, self._longest_stop = (), 0

    def finish(self) -> str:
        """End of generation: flush what was held back for a possible stop string."""
        if not self.stopped:
            self._text += self._decoder.decode(b"", final=True)
        return self._release(len(self._text))

    def _held_tail(self) -> int:
        # Longest suffix of the text that could still grow into a stop string.
        for n in range(min(self._longest_stop - 1, len(self._text)), 0, -1):
            tail = self._text[-n:]
            if any(s.startswith(tail) for s in self._stop):
                return n
        return 0

    def _release(self, end: int) -> str:
        end = max(end, self._released)
        new = self._text[self._released : end]
        self._released = end
        return new
