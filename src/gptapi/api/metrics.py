"""Prometheus exposition. Needs an API key unless GPTAPI_METRICS_PUBLIC is set."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gptapi.api.deps import SettingsDep
from gptapi.auth import require_api_key
from gptapi.schemas import ErrorResponse

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Prometheus text exposition format"},
        401: {"model": ErrorResponse, "description": "Missing, malformed or unknown API key"},
        429: {"model": ErrorResponse, "description": "Rate limit exhausted"},
    },
)  # fmt: skip
async def metrics(request: Request, settings: SettingsDep) -> Response:
    if not settings.metrics_public:
        require_api_key(request)
    # Collecting reads /proc for the memory gauges: do it off the event loop.
    body = await asyncio.to_thread(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
