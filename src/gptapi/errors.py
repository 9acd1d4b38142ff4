"""Domain exceptions, the one table mapping them to HTTP, and the one renderer of the one JSON
error shape, ``{"error": {"type", "message", "code", "request_id"}}``.

Every refusal is one of these exceptions, raised wherever it is found (ASGI guards, routes,
the pool); ``render_error`` writes them all, and the stream error event uses the same table.
On ``/v1`` the statuses are OpenAI's: every invalid request is a 400.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

log = logging.getLogger("gptapi.errors")


class GptapiError(Exception):
    """Base of every error the service answers with on purpose."""

    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class AuthenticationError(GptapiError):
    code = "invalid_api_key"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="gptapi"'})


class ContextLengthExceeded(GptapiError):
    code = "context_length_exceeded"


class InvalidRequest(GptapiError):
    code = "validation_error"


class UnsupportedParameter(GptapiError):
    """A parameter the OpenAI API has and this server does not honour."""

    code = "unsupported_parameter"

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class InputTooLarge(GptapiError):
    code = "input_too_large"


class NotJson(GptapiError):
    """The body is not JSON at all (or not UTF-8, or absurdly nested): malformed, not invalid."""

    code = "bad_request"


class UnsupportedMediaType(GptapiError):
    code = "unsupported_media_type"


class BodyTooLarge(GptapiError):
    code = "request_too_large"

    def __init__(self, message: str) -> None:
        # The rest of the upload is not read: the connection cannot be reused.
        super().__init__(message, headers={"Connection": "close"})


class BodyTimeout(GptapiError):
    code = "body_timeout"


class NotFound(GptapiError):
    code = "not_found"


class MethodNotAllowed(GptapiError):
    code = "method_not_allowed"


class HttpRefusal(GptapiError):
    """Any other status Starlette or FastAPI refuses with: passed on as it is."""

    code = "http_error"

    def __init__(self, status: int, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}", headers=headers)
        self.status = status


class InternalError(GptapiError):
    """A bug. The client learns only the request id; the traceback stays in the server log."""

    code = "internal_error"

    def __init__(self) -> None:
        super().__init__("internal server error")


class ServerBusy(GptapiError):
    code = "server_busy"

    def __init__(self, message: str, retry_after_s: int, *, reason: str = "queue_full") -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.reason = reason


class RateLimited(GptapiError):
    code = "rate_limited"


class KeyBusy(RateLimited):
    """This key already has the most requests decoding or queued that one key may have."""

    code = "too_many_requests_in_flight"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class TokenBudgetExhausted(RateLimited):
    """This key used its prompt + completion tokens for the current window."""

    code = "token_rate_limited"


class RequestTimeout(GptapiError):
    code = "request_timeout"


class GenerationFailed(GptapiError):
    code = "generation_failed"


class ClientDisconnected(GptapiError):
    code = "client_disconnected"


class ModelNotReady(GptapiError):
    code = "model_not_ready"

    def __init__(self, message: str = "the model is still loading") -> None:
        super().__init__(message, headers={"Retry-After": "5"})


class EngineUnavailable(GptapiError):
    """The engine's scheduler thread is gone: nothing would ever answer. Restart the process."""

    code = "engine_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the inference engine stopped (see the server log); this instance cannot serve",
            headers={"Retry-After": "30"},
        )


class ModelFileError(GptapiError):
    """The model file cannot be served; raised at start-up, never during a request."""

    code = "model_file_error"


# The one table: exception class -> (HTTP status, error type).
ERROR_TABLE: dict[type[GptapiError], tuple[int, str]] = {
    AuthenticationError: (401, "authentication_error"),
    ContextLengthExceeded: (413, "invalid_request_error"),
    InputTooLarge: (413, "invalid_request_error"),
    InvalidRequest: (422, "invalid_request_error"),
    UnsupportedParameter: (400, "invalid_request_error"),
    NotJson: (400, "invalid_request_error"),
    UnsupportedMediaType: (415, "invalid_request_error"),
    BodyTooLarge: (413, "invalid_request_error"),
    BodyTimeout: (408, "invalid_request_error"),
    NotFound: (404, "invalid_request_error"),
    MethodNotAllowed: (405, "invalid_request_error"),
    InternalError: (500, "server_error"),
    ModelNotReady: (503, "service_unavailable"),
    ServerBusy: (503, "service_unavailable"),
    EngineUnavailable: (503, "service_unavailable"),
    RateLimited: (429, "rate_limit_error"),
    RequestTimeout: (504, "timeout_error"),
    GenerationFailed: (500, "server_error"),
    # nginx's convention; the client is gone and never sees it, but logs and metrics do.
    ClientDisconnected: (499, "client_closed_request"),
    ModelFileError: (500, "server_error"),
}

_V1_PREFIX = "/v1/"


def status_for(exc: GptapiError, path: str = "") -> tuple[int, str]:
    """HTTP status and error type: the table's entry for the nearest class, with OpenAI's 400
    for every invalid request on /v1 (its clients raise BadRequestError for it)."""
    status, type_ = next(
        (ERROR_TABLE[cls] for cls in type(exc).__mro__ if cls in ERROR_TABLE),
        (500, "server_error"),
    )
    if isinstance(exc, HttpRefusal):
        status, type_ = exc.status, "invalid_request_error" if exc.status < 500 else "server_error"
    if path.startswith(_V1_PREFIX) and status in (413, 422):
        status = 400
    return status, type_


def error_body(
    *, type_: str, message: str, code: str, request_id: str | None
) -> dict[str, dict[str, Any]]:
    return {"error": {"type": type_, "message": message, "code": code, "request_id": request_id}}


def error_response(exc: GptapiError, state: dict[str, Any], path: str) -> JSONResponse:
    """The one renderer. Notes the error code as the request's end reason for the log."""
    record = state.get("record")
    if record is not None and record.end_reason is None:
        record.end_reason = exc.code
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


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error in request %s", _state(request).get("request_id"), exc_info=exc)
    return error_response(InternalError(), _state(request), request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GptapiError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
