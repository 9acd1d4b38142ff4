"""Liveness and readiness; both open without a key so balancers and probes can use them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gptapi.api.deps import PoolDep, SettingsDep
from gptapi.errors import EngineUnavailable, ModelNotReady
from gptapi.schemas import ErrorResponse, Health, Ready
from gptapi.serve import workers_not_ready

router = APIRouter(tags=["health"])


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
async def ready(pool: PoolDep, settings: SettingsDep) -> Ready:
    if not pool.engine.healthy():
        raise EngineUnavailable()
    loading, workers = workers_not_ready()
    if loading:
        raise ModelNotReady(f"the model is still loading in {loading} of {workers} workers")
    admission = pool.admission
    return Ready(
        status="ready",
        model=pool.engine.info.id,
        engine=settings.engine,
        slots=admission.slots,
        busy_slots=admission.busy,
        queued=admission.queued,
    )
