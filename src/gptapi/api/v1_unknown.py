"""Unknown fields in /v1 bodies: ignored as OpenAI's peers ignore them, logged once per name and
counted in ``gptapi_v1_ignored_fields_total``; with ``GPTAPI_V1_STRICT`` a 400 naming them.

Clients send fields this server has no use for all the time: the ``openai`` SDK's ``store``,
``metadata``, ``service_tier``, ``prompt_cache_key``, a message's ``id`` echoed back. Refusing
them broke ordinary calls; ignoring them silently would hide a typo forever. The metric's label
is the field's name when it is one of the names below, else ``other``: a client cannot grow the
series by inventing names.
"""

from __future__ import annotations

import logging

from fastapi import Request

from gptapi.config import Settings
from gptapi.errors import UnsupportedParameter
from gptapi.telemetry.metrics import KNOWN_IGNORED

log = logging.getLogger("gptapi.api")

_LOGGED_AT_MOST = 256
_logged: set[str] = set()


def metric_label(name: str) -> str:
    return name if name in KNOWN_IGNORED else "other"


def ignore_unknown_fields(request: Request, settings: Settings, names: list[str]) -> None:
    """Refuse (strict) or note the body's unknown field names."""
    if not names:
        return
    if settings.v1_strict:
        raise UnsupportedParameter(
            f"unknown field(s): {', '.join(names[:8])} (GPTAPI_V1_STRICT is on)", param=names[0]
        )
    metrics = getattr(request.app.state, "metrics", None)
    for name in names:
        if metrics is not None:
            metrics.v1_ignored_fields.labels(metric_label(name)).inc()
        short = name[:64]
        if short not in _logged and len(_logged) < _LOGGED_AT_MOST:
            _logged.add(short)
            # The name only, never the value (it may be a prompt or a key).
            log.info("/v1: ignoring the unknown field %r (logged once per name)", short)
