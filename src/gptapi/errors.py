"""Domain exceptions, the one table mapping them to HTTP, and the one JSON error shape.

Every error response is ``{"error": {"type", "message", "code", "request_id"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    ModelNotReady: (503, "service_unavailable"),
    ServerBusy: (503, "service_unavailable"),
    RateLimited: (429, "rate_limit_error"),
    RequestTimeout: (504, "timeout_error"),
    GenerationFailed: (500, "server_error"),
    # nginx's convention; the client is gone and never sees it, but logs and metrics do.
    ClientDisconnected: (499, "client_closed_request"),
    ModelFileError: (500, "server_error"),
}

_HTTP_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    422: ("invalid_request_error", "validation_error"),
    429: ("rate_limit_error", "rate_limited"),
    503: ("service_unavailable", "service_unavailable"),
}


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_body(
    *, type_: str, message: str, code: str, request_id: str | None
) -> dict[str, dict[str, Any]]:
    return {"error": {"type": type_, "message": message, "code": code, "request_id": request_id}}


def error_response(
    request: Request,
    status: int,
    type_: str,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    record = getattr(request.state, "record", None)
    if record is not None and record.end_reason is None:
        record.end_reason = code
    body = error_body(type_=type_, message=message, code=code, request_id=request_id_of(request))
    return JSONResponse(body, status_code=status, headers=headers)


def _status_for(exc: GptapiError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return 500, "server_error"


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GptapiError)
    status, type_ = _status_for(exc)
    return error_response(request, status, type_, exc.message, exc.code, exc.headers)


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
        return error_response(
            request, 400, "invalid_request_error",
            f"request body is not valid JSON: {_describe_validation(exc)}", "bad_request",
        )  # fmt: skip
    # OpenAI's API answers every invalid request with 400; its clients expect that on /v1.
    status = 400 if request.url.path.startswith("/v1/") else 422
    return error_response(
        request, status, "invalid_request_error", _describe_validation(exc), "validation_error"
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_, code = _HTTP_TYPES.get(exc.status_code, ("invalid_request_error", "http_error"))
    return error_response(
        request, exc.status_code, type_, str(exc.detail), code, dict(exc.headers or {})
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The client learns only the request id; the traceback stays in the server log.
    log.error("unhandled error in request %s", request_id_of(request), exc_info=exc)
    return error_response(request, 500, "server_error", "internal server error", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GptapiError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
