"""How many prompt tokens one decode step may carry while other requests stream tokens.

A step decodes one token for every streaming sequence plus prompt chunks, and no streaming
user gets a token until the step ends. On a 2-core CPU a full 512-token prompt chunk of a 4B
model is ~30 s, so chunks are sized from running estimates of this machine's speeds: the time
of a step of ``n`` decoding tokens alone, and the time per prompt token, so that the step stays
near the target. With nobody decoding, prompts take the whole batch: nobody waits on them.

A client that did not ask to stream reads nothing until its whole answer is done, so what it
feels is its total time, not the gap between two tokens: while only such requests decode, steps
follow a second target (by default none: whole prompt chunks, the most prompt tokens per second
this CPU computes; measured in docs/performance.md, issue 27).
"""

from __future__ import annotations

from gptapi.engine.base import Speeds

_ALPHA = 0.3  # weight of the newest measurement in the running estimates
# A prompt always advances, even when decoding alone takes the whole target: otherwise a queue
# of prompts would wait for every stream to finish.
MIN_PROMPT_TOKENS = 16
# Before the prompt speed is known: a small chunk to measure it with.
_PROBE_TOKENS = 32


class StepBudget:
    def __init__(self, target_s: float, unstreamed_target_s: float = 0.0) -> None:
        self.target_s = target_s  # while a streamed request decodes
        self.unstreamed_target_s = unstreamed_target_s  # while only unstreamed ones decode
        self._decode_s: dict[int, float] = {}  # decoding tokens -> step time with no prompt
        self.prompt_token_s: float | None = None

    def start_from(self, speeds: Speeds) -> None:
        """Begin from the speeds measured at start-up rather than probing."""
        self.prompt_token_s = speeds.prompt_token_s
        self._decode_s[1] = speeds.decode_1_s
        self._decode_s[speeds.slots] = speeds.decode_full_s

    def prompt_tokens(self, n_decoding: int, room: int, *, streaming: bool = True) -> int:
        """Prompt tokens for a step that decodes ``n_decoding`` tokens; ``room`` is what the
        batch has left; ``streaming``: one of the decoding requests is streamed."""
        target_s = self.target_s if streaming else self.unstreamed_target_s
        if n_decoding == 0 or target_s <= 0:
            return room
        if self.prompt_token_s is None:
            return min(room, _PROBE_TOKENS)
        left = target_s - self.decode_s(n_decoding)
        fits = int(left / self.prompt_token_s) if left > 0 else 0
        return min(room, max(MIN_PROMPT_TOKENS, fits))

    def decode_s(self, n_decoding: int) -> float:
        """Estimated time of a step of ``n_decoding`` decoding tokens and no prompt: measured
        for that count, else scaled from the nearest count measured (0 if none yet)."""
        if n_decoding in self._decode_s:
            return self._decode_s[n_decoding]
        if not self._decode_s:
            return 0.0
        nearest = min(self._decode_s, key=lambda n: abs(n - n_decoding))
        return self._decode_s[nearest] * max(1.0, n_decoding / nearest)

    def observe(self, n_decoding: int, n_prompt: int, seconds: float) -> None:
        """Learn from a step that took ``seconds`` (the llama_decode call)."""
        if n_prompt == 0:
            if n_decoding > 0:
                self._decode_s[n_decoding] = _ema(self._decode_s.get(n_decoding), seconds)
            return
        if n_decoding == 0:
            per_token = seconds / n_prompt
        elif n_decoding in self._decode_s:
            prompt_s = seconds - self._decode_s[n_decoding]
            if prompt_s < 0.25 * seconds:
                return  # mostly decoding: the difference would be noise
            per_token = prompt_s / n_prompt
        else:
            return  # cannot tell the two parts apart yet
        self.prompt_token_s = _ema(self.prompt_token_s, per_token)


def _ema(old: float | None, new: float) -> float:
    return new if old is None else (1 - _ALPHA) * old + _ALPHA * new
