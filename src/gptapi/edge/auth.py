"""Authentication: the one place a key is checked. Keys are stored only as SHA-256 digests,
compared in constant time and logged by a short id.

``Authentication`` runs before routing and before the body is read. Every path that is not in
``edge.OPEN_PATHS`` needs a valid key, so a new route is closed by default: it does not have to
remember to ask for one. A missing or wrong key is a 401, counted in a per-address budget
(``RateLimits.hit_without_key``); once that is spent, that address gets 429s.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from gptapi.config import Settings
from gptapi.edge.ratelimit import RateLimits, client_ip
from gptapi.edge.responses import render_error
from gptapi.errors import AuthenticationError, GptapiError

_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
MIN_KEY_CHARS = 16


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id_of(key_digest: bytes) -> str:
    """What logs and metrics may show of a key: 8 hex chars of its digest, not reversible."""
    return key_digest.hex()[:8]


@dataclass(frozen=True)
class KeyStore:
    digests: tuple[bytes, ...]
    generated_key: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        digests: list[bytes] = []
        if settings.api_keys is not None:
            keys = [k.strip() for k in settings.api_keys.get_secret_value().split(",")]
            for number, key in enumerate((k for k in keys if k), start=1):
                # The key itself never goes into the message.
                if len(key) < MIN_KEY_CHARS:
                    raise ValueError(
                        f"API key #{number} in GPTAPI_API_KEYS has {len(key)} characters; "
                        f"keys must have at least {MIN_KEY_CHARS}"
                    )
                if not _KEY_CHARS.match(key):
                    raise ValueError(
                        f"API key #{number} in GPTAPI_API_KEYS has characters outside "
                        "printable ASCII (or spaces)"
                    )
                digests.append(digest(key))
        if settings.api_keys_file is not None:
            digests += _read_digest_file(settings.api_keys_file)
        ids = [key_id_of(d) for d in dict.fromkeys(digests)]
        if len(set(ids)) != len(ids):
            # Key ids name keys in logs, limits and prompt-cache scopes: they must be unique.
            raise ValueError("two API keys share a key id (first 8 hex digits of the digest)")
        if digests:
            return cls(tuple(digests))
        # Secure by default: no configured key means a fresh random one, never an open API.
        key = "gpt-" + secrets.token_urlsafe(32)
        return cls((digest(key),), generated_key=key)

    def verify(self, key: str) -> str | None:
        """Return the key id when the key is known, else None. Time does not depend on which."""
        presented = digest(key)
        match: bytes | None = None
        for known in self.digests:
            # No early exit: every stored digest is compared.
            if hmac.compare_digest(presented, known):
                match = known
        return key_id_of(match) if match is not None else None


def _read_digest_file(path: Path) -> list[bytes]:
    digests = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip().lower()
        if not line or line.startswith("#"):
            continue
        if not _HEX_DIGEST.match(line):
            raise ValueError(f"{path}:{number}: expected a SHA-256 hex digest (64 hex chars)")
        digests.append(bytes.fromhex(line))
    return digests


def presented_key(request: HTTPConnection) -> str:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not _KEY_CHARS.match(credentials):
            raise AuthenticationError(
                "malformed Authorization header: expected 'Authorization: Bearer <key>'"
            )
        return credentials
    key = request.headers.get("x-api-key")
    if key is not None:
        key = key.strip()
        if not _KEY_CHARS.match(key):
            raise AuthenticationError("malformed X-API-Key header")
        return key
    raise AuthenticationError(
        "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    )


class Authentication:
    """Sets ``scope["state"]["key_id"]`` for every request to a path outside ``open_paths``, or
    answers 401 (429 once the address has spent its budget for requests without a valid key)."""

    def __init__(self, app: ASGIApp, keys: KeyStore, open_paths: frozenset[str]) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            key_id = await self._verify(scope)
        except GptapiError as exc:
            await render_error(scope, receive, send, exc)
            return
        state["key_id"] = key_id
        record = state.get("record")
        if record is not None:
            record.key_id = key_id
        await self.app(scope, receive, send)

    async def _verify(self, scope: Scope) -> str:
        try:
            key_id = self.keys.verify(presented_key(HTTPConnection(scope)))
            if key_id is None:
                raise AuthenticationError("invalid API key")
        except AuthenticationError:
            limits: RateLimits = scope["app"].state.rate_limits
            await limits.call(limits.hit_without_key, client_ip(scope))  # 429 once spent
            raise
        return key_id
