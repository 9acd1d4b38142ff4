"""Operations: liveness and readiness (open without a key, so balancers and probes can use them)
and the Prometheus exposition (needs a key unless GPTAPI_METRICS_PUBLIC is set; public, it is
limited per client address like /health)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gptapi.api.deps import GatewayDep, SettingsDep
from gptapi.api.schemas import ErrorResponse, Health, Ready
from gptapi.errors import EngineUnavailable, ModelNotReady, ServerBusy
from gptapi.serve import workers_not_ready

router = APIRouter(tags=["operations"])


_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "Too many requests from this address"}
}


@router.get("/health", summary="Liveness: the process answers", responses=_LIMITED)
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    summary="Readiness: the model is loaded and requests can be served",
    responses={
        503: {"model": ErrorResponse, "description": "Model still loading, or engine stopped"},
        **_LIMITED,
    },
)
async def ready(gateway: GatewayDep, settings: SettingsDep) -> Ready:
    if not gateway.engine.healthy():
        raise EngineUnavailable()
    if gateway.admission.draining:
        # A balancer that trusts /ready stops sending here while the running requests finish.
        raise ServerBusy(
            "server is shutting down", gateway.admission.retry_after_s(), reason="draining"
        )
    loading, workers = workers_not_ready()
    if loading:
        raise ModelNotReady(f"the model is still loading in {loading} of {workers} workers")
    admission = gateway.admission
    return Ready(
        status="ready",
        model=gateway.engine.info.id,
        engine=settings.engine,
        slots=admission.slots,
        busy_slots=admission.busy,
        queued=admission.queued,
    )


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
