"""Security headers on every response, refusals by the outer layers included."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptapi.web import PAGE_PATHS

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# JSON and event streams never need scripts, styles or frames; the docs pages load theirs from
# a CDN, so they keep the browser defaults.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
# The playground page and its assets (gptapi.web): scripts and styles from this origin's files
# only, never inline, so model output that reached the DOM as markup still could not run; calls
# to this origin only (the key goes nowhere else); no forms posted, no framing, no <base>.
_PAGE_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
)


class SecurityHeaders:
    """On every response, refusals by the outer layers included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = _with_security_headers(send, scope["path"])
        await self.app(scope, receive, send)


def _with_security_headers(send: Send, path: str) -> Send:
    extra = list(_SECURITY_HEADERS)
    if path in PAGE_PATHS:
        extra.append(_PAGE_CSP)
    elif path not in _DOCS_PATHS:
        extra.append(_API_CSP)

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            headers += [(k, v) for k, v in extra if k not in present]
            if b"cache-control" not in present:
                headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
        await send(message)

    return sending
