"""Prometheus exposition. Needs an API key (checked and counted by ``limits.EdgeRateLimit``)
unless GPTAPI_METRICS_PUBLIC is set; public, it is limited per client address like /health."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
async def metrics(request: Request) -> Response:
    # Collecting reads /proc for the memory gauges: do it off the event loop.
    body = await asyncio.to_thread(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
