"""Shared route dependencies, as ``Annotated`` types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gptapi.config import Settings
from gptapi.errors import AuthenticationError, ModelNotReady
from gptapi.gateway import Gateway


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway | None = request.app.state.gateway
    if gateway is None:
        raise ModelNotReady()
    return gateway


def get_key_id(request: Request) -> str:
    """The key id ``edge.auth.Authentication`` set: every path outside the open ones has one."""
    key_id: str | None = getattr(request.state, "key_id", None)
    if key_id is None:  # pragma: no cover - a route on an open path asking for a key
        raise AuthenticationError("missing API key")
    return key_id


KeyDep = Annotated[str, Depends(get_key_id)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
