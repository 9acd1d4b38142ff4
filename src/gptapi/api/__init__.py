"""HTTP routes: the task endpoints, the OpenAI-compatible ``/v1`` and operations. Every route
adapts its body to a ``pipeline`` job and shapes the result; only ``pipeline`` runs them. The
playground page at ``/`` and the monitor's JSON read what the others produce."""

from fastapi import APIRouter

from gptapi.api import monitor, ops, playground, tasks, tokens, v1

ROUTERS: tuple[APIRouter, ...] = (
    ops.router,
    tasks.router,
    v1.router,
    tokens.router,
    monitor.router,
    playground.router,
)
