"""One renderer for every error: AppError, Starlette's HTTPException, middleware errors and
unexpected exceptions all become ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp

from middleware import types as mw
from middleware.csrf import CsrfRejected
from middleware.in_flight import Overloaded
from middleware.rate_limit import RateLimited
from server.web import errors

PROBLEM_TYPE_PREFIX = "urn:hotpath:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"
CLIENT_CLOSED_REQUEST = 499

_HTTP_STATUS_ERRORS: dict[int, type[errors.AppError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    408: errors.RequestTimeout,
    409: errors.Conflict,
    412: errors.PreconditionFailed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    428: errors.PreconditionRequired,
    429: errors.TooManyRequests,
    503: errors.ServiceUnavailable,
}


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    exc: errors.AppError, *, request_id: str | None = None, instance: str | None = None
) -> Response:
    status = exc.status_code
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + exc.slug,
        "title": exc.title if not isinstance(exc, errors.HttpError) else _phrase(status),
        "status": status,
        "detail": exc.detail or exc.title,
    }
    if instance is not None:
        body["instance"] = instance
    if request_id is not None:
        body["request_id"] = request_id
    body.update(exc.extra)
    headers = dict(exc.headers)
    return ProblemResponse(orjson.dumps(body), status_code=status, headers=headers)


def to_app_error(exc: BaseException) -> errors.AppError:
    """Map any exception to the AppError the client sees; unknown ones become a bare 500."""
    if isinstance(exc, errors.AppError):
        return exc
    if isinstance(exc, HTTPException):
        cls = _HTTP_STATUS_ERRORS.get(exc.status_code)
        detail = exc.detail if exc.detail != _phrase(exc.status_code) else None
        mapped = cls(detail) if cls is not None else errors.HttpError(exc.status_code, detail)
        if exc.headers:
            mapped.headers.update(exc.headers)
        return mapped
    if isinstance(exc, mw.PayloadTooLarge):
        return errors.PayloadTooLarge(f"The request body exceeds the limit of {exc.limit} bytes.")
    if isinstance(exc, mw.BadContentLength):
        return errors.BadContentLength("Content-Length must be a non-negative integer.")
    if isinstance(exc, mw.BodyTimeout):
        return errors.RequestTimeout("The request body did not arrive in time.")
    if isinstance(exc, mw.BodyReadersBusy):
        return errors.Overloaded(
            "Too many request bodies are being received; retry shortly.",
            retry_after=exc.retry_after,
        )
    if isinstance(exc, Overloaded):
        return errors.Overloaded(
            "Too many requests in flight; retry shortly.", retry_after=exc.retry_after
        )
    if isinstance(exc, CsrfRejected):
        return errors.CsrfFailed(str(exc))
    if isinstance(exc, mw.CorsRejected):
        return errors.CorsRejected(str(exc))
    if isinstance(exc, RateLimited):
        headers = {name.decode(): value.decode() for name, value in exc.headers}
        return errors.TooManyRequests("Rate limit exceeded; see Retry-After.", headers=headers)
    return errors.AppError("The server failed to handle this request.")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def _request_id(scope: Mapping[str, Any]) -> str | None:
    rid = scope.get("request_id")
    return rid if isinstance(rid, str) else None


def middleware_error_renderer(exc: Exception) -> ASGIApp:
    """What middleware gets injected: exception in, problem response (an ASGI app) out."""
    app_error = to_app_error(exc)

    async def respond(scope: Any, receive: Any, send: Any) -> None:
        response = problem_response(app_error, request_id=_request_id(scope))
        await response(scope, receive, send)

    return respond


def exception_handlers(
    logger: structlog.typing.FilteringBoundLogger,
) -> dict[Any, Callable[[Request, Exception], Any]]:
    """Starlette exception handlers: one for known errors, one for the 500 path."""

    logged: dict[str, tuple[float, int]] = {}  # problem slug -> (last line's time, suppressed)

    async def known(request: Request, exc: Exception) -> Response:
        error = to_app_error(exc)
        if error.status_code >= 500:
            # A known outage (the database not answering, load shed): not a bug, but operators
            # must see it. One line per kind a second: an outage must not add a log write to
            # every request it refuses.
            now = time.monotonic()
            last, suppressed = logged.get(error.slug, (0.0, 0))
            if now - last >= 1.0:
                logged[error.slug] = (now, 0)
                cause = exc.__cause__
                logger.warning(
                    "service_unavailable",
                    problem=error.slug,
                    path=request.url.path,
                    cause=type(cause).__name__ if cause is not None else None,
                    suppressed=suppressed,
                )
            else:
                logged[error.slug] = (last, suppressed + 1)
        return problem_response(error, request_id=_request_id(request.scope))

    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer so the server also sees it; the log line
        # carries the request id so the client's copy can be matched to the traceback.
        logger.error(
            "unhandled_exception",
            method=request.method,
            path=request.url.path,
            exc_info=exc,
        )
        return problem_response(to_app_error(exc), request_id=_request_id(request.scope))

    async def disconnected(request: Request, exc: Exception) -> Response:
        # The client left while its body was being read: not a server error, and nobody reads
        # an answer. 499, nginx's "client closed request", is what the access log and the
        # metrics record.
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    return {
        ClientDisconnect: disconnected,
        errors.AppError: known,
        HTTPException: known,
        mw.PayloadTooLarge: known,
        mw.BadContentLength: known,
        RateLimited: known,
        Overloaded: known,
        Exception: unexpected,
    }
