"""The playground and live monitor page: plain HTML, CSS and JS files shipped as package data.

Nothing is built and nothing is fetched at run time (no CDN): the page works offline. The files
are listed here, once, so the routes that serve them (``api.playground``), the edge's open
paths and its page Content-Security-Policy (``edge``) all name the same set: a file added to
this folder but not to ``ASSETS`` is not served.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

PAGE = "index.html"
PAGE_TYPE = "text/html; charset=utf-8"

# Served under /static/<name>. JS is loaded as ES modules, which browsers refuse unless the type
# is a JavaScript one (and ``nosniff`` makes them check it).
ASSETS: dict[str, str] = {
    "playground.css": "text/css; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "sampling.js": "text/javascript; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "tasks.js": "text/javascript; charset=utf-8",
    "monitor.js": "text/javascript; charset=utf-8",
    "plot.js": "text/javascript; charset=utf-8",
}
STATIC_PREFIX = "/static/"

# Every path of the page: public (no key needed to load it; every call it makes needs one).
PAGE_PATHS: frozenset[str] = frozenset({"/", *(STATIC_PREFIX + name for name in ASSETS)})


@cache
def read(name: str) -> bytes:
    """A file of this folder, read once per process (they do not change while it runs)."""
    return files(__name__).joinpath(name).read_bytes()
