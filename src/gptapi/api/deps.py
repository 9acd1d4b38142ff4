"""Shared route dependencies, as ``Annotated`` types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gptapi.config import Settings
from gptapi.errors import ModelNotReady
from gptapi.pool import InferencePool


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_pool(request: Request) -> InferencePool:
    pool: InferencePool | None = request.app.state.pool
    if pool is None:
        raise ModelNotReady()
    return pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
