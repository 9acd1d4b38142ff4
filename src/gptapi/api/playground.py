"""The playground and live monitor page at ``/`` and its static files (``gptapi.web``).

Both are open paths (``edge.OPEN_PATHS``), limited per client address like /health: the page
holds no data, and every call it makes sends the key the user typed into it. Their strict
Content-Security-Policy is set by ``edge.headers``, like every other security header.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from gptapi import web
from gptapi.errors import NotFound

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> Response:
    return Response(web.read(web.PAGE), media_type=web.PAGE_TYPE)


@router.get(web.STATIC_PREFIX + "{name}")
async def asset(name: str) -> Response:
    # Only the files listed in gptapi.web: a name is looked up, never joined into a path.
    media_type = web.ASSETS.get(name)
    if media_type is None:
        raise NotFound("not found")
    return Response(web.read(name), media_type=media_type)
