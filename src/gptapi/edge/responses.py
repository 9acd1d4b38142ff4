"""The one error renderer: every ``GptapiError`` (and Starlette's and FastAPI's own refusals,
translated to one) becomes the one JSON shape, whether the edge refuses a request before
routing (``render_error``) or a route raises (the exception handlers). Unexpected exceptions
are not handled here: ``edge.context`` answers them, once, with the request id.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from gptapi.errors import (
    GptapiError,
    HttpRefusal,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    NotJson,
    error_body,
    status_for,
)


def error_response(exc: GptapiError, state: dict[str, Any], path: str) -> JSONResponse:
    """The one renderer. Notes the error code as the request's end reason for the log."""
    record = state.get("record")
    if record is not None:
        record.end(exc.code)
    status, type_ = status_for(exc, path)
    request_id = state.get("request_id")
    body = error_body(type_=type_, message=exc.message, code=exc.code, request_id=request_id)
    return JSONResponse(body, status_code=status, headers=exc.headers or None)


async def render_error(scope: Scope, receive: Receive, send: Send, exc: GptapiError) -> None:
    """The renderer for ASGI middleware, which answers before routing."""
    response = error_response(exc, scope.setdefault("state", {}), scope["path"])
    await response(scope, receive, send)


def _state(request: Request) -> dict[str, Any]:
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GptapiError)
    return error_response(exc, _state(request), request.url.path)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        # Drop the leading "body" so the location reads like the client's own JSON.
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        # Not JSON at all is a malformed request (400), like bad UTF-8 or absurd nesting;
        # 422 is for JSON that breaks the schema.
        domain: GptapiError = NotJson(
            f"request body is not valid JSON: {_describe_validation(exc)}"
        )
    else:
        domain = InvalidRequest(_describe_validation(exc))
    return error_response(domain, _state(request), request.url.path)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's and FastAPI's own refusals: routing, and bodies it cannot read.
    assert isinstance(exc, StarletteHTTPException)
    domain: GptapiError
    if exc.status_code == 405:
        domain = MethodNotAllowed("method not allowed", headers=dict(exc.headers or {}))
    elif exc.status_code == 404:
        domain = NotFound("not found")
    elif exc.status_code == 400:
        domain = NotJson("the request body could not be read")
    else:
        domain = HttpRefusal(exc.status_code, headers=dict(exc.headers or {}))
    return error_response(domain, _state(request), request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GptapiError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
