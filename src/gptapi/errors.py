"""Domain exceptions and the one table mapping them to HTTP statuses and error types, with the
one JSON error shape, ``{"error": {"type", "message", "code", "request_id"}}``.

Every refusal is one of these exceptions, raised wherever it is found (the edge, routes, the
gateway, the engine's adapters); ``edge.responses`` renders them all, and the stream error event
uses the same table. On ``/v1`` the statuses are OpenAI's: every invalid request is a 400. No
web framework is imported here.
"""

from __future__ import annotations

from typing import Any, Literal

# Why a request was refused before generating (gptapi_refusals_total{reason}).
RefusalReason = Literal[
    "queue_full", "draining", "key_in_flight", "low_memory", "context_length", "token_rate",
    "kv_full", "engine_unavailable", "deadline",
]  # fmt: skip


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


class HeadersTooLarge(GptapiError):
    """Refused by the HTTP protocol itself, before any ASGI layer (``edge.transport``)."""

    code = "headers_too_large"


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

    def __init__(
        self, message: str, retry_after_s: int, *, reason: RefusalReason = "queue_full"
    ) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.reason = reason


class DeadlineUnmeetable(ServerBusy):
    """The deadline forecast says this request would finish past its time limit: refused
    before it waits or computes anything (``forecast.py``)."""

    code = "deadline_unmeetable"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, retry_after_s, reason="deadline")


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
    HeadersTooLarge: (431, "invalid_request_error"),
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
    for every invalid request on /v1 (its clients raise BadRequestError for it): too large,
    not JSON (415 elsewhere) and schema errors alike."""
    status, type_ = next(
        (ERROR_TABLE[cls] for cls in type(exc).__mro__ if cls in ERROR_TABLE),
        (500, "server_error"),
    )
    if isinstance(exc, HttpRefusal):
        status, type_ = exc.status, "invalid_request_error" if exc.status < 500 else "server_error"
    if path.startswith(_V1_PREFIX) and status in (413, 415, 422):
        status = 400
    return status, type_


def error_body(
    *, type_: str, message: str, code: str, request_id: str | None
) -> dict[str, dict[str, Any]]:
    return {"error": {"type": type_, "message": message, "code": code, "request_id": request_id}}
