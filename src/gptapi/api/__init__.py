"""HTTP routes: the task endpoints, the OpenAI-compatible ``/v1`` and operations. Every route
adapts its body to a ``pipeline`` job and shapes the result; only ``pipeline`` runs them."""

from fastapi import APIRouter

from gptapi.api import ops, tasks, tokens, v1

ROUTERS: tuple[APIRouter, ...] = (ops.router, tasks.router, v1.router, tokens.router)
