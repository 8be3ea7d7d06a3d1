"""The application's error tree.

Every error a client can see is an ``AppError`` subclass with a unique ``slug`` (the stable
problem ``type``), a ``title`` and a ``status``. One renderer (``server.web.problem``) turns any of
them into ``application/problem+json``.
"""

from __future__ import annotations

from typing import Any, ClassVar

_SLUGS: dict[str, type[AppError]] = {}


class AppError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}

    @property
    def status_code(self) -> int:
        return self.status

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "slug" in cls.__dict__:
            taken = _SLUGS.get(cls.slug)
            if taken is not None and taken.__qualname__ != cls.__qualname__:
                raise TypeError(f"problem slug {cls.slug!r} is already used by {taken.__name__}")
            _SLUGS[cls.slug] = cls


def registered_slugs() -> dict[str, type[AppError]]:
    return dict(_SLUGS)


_SLUGS[AppError.slug] = AppError


class BadRequest(AppError):
    status = 400
    slug = "bad-request"
    title = "Bad Request"


class MalformedJson(BadRequest):
    slug = "malformed-json"
    title = "Malformed JSON body"


class BadContentLength(BadRequest):
    slug = "bad-content-length"
    title = "Invalid Content-Length header"


class UnknownParameter(BadRequest):
    slug = "unknown-parameter"
    title = "Unknown query parameter"


class InvalidParameter(BadRequest):
    slug = "invalid-parameter"
    title = "Invalid query parameter"


class Unauthorized(AppError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"


class Forbidden(AppError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class CsrfFailed(Forbidden):
    slug = "csrf-failed"
    title = "Cross-site request refused"


class CorsRejected(Forbidden):
    slug = "cors-rejected"
    title = "CORS preflight rejected"


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not Found"


class MethodNotAllowed(AppError):
    status = 405
    slug = "method-not-allowed"
    title = "Method Not Allowed"


class RequestTimeout(AppError):
    """The request body did not arrive in time; the connection is closed after the answer."""

    status = 408
    slug = "request-timeout"
    title = "Request Timeout"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"connection": "close"})


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PreconditionFailed(AppError):
    status = 412
    slug = "precondition-failed"
    title = "Precondition Failed"


class PayloadTooLarge(AppError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(AppError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported Media Type"


class ValidationFailed(AppError):
    """The body parsed but did not fit the schema; ``errors`` carry JSON pointers."""

    status = 422
    slug = "validation-failed"
    title = "Validation failed"

    def __init__(self, detail: str, *, errors: list[dict[str, str]]) -> None:
        super().__init__(detail, extra={"errors": errors})


class PreconditionRequired(AppError):
    status = 428
    slug = "precondition-required"
    title = "Precondition Required"


class TooManyRequests(AppError):
    status = 429
    slug = "rate-limited"
    title = "Too Many Requests"


class HttpError(AppError):
    """A status without a more specific class (e.g. a bare Starlette HTTPException)."""

    slug = "http-error"
    title = "HTTP error"

    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self._status = status

    @property
    def status_code(self) -> int:
        return self._status


class ServiceUnavailable(AppError):
    status = 503
    slug = "service-unavailable"
    title = "Service Unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"retry-after": str(retry_after)})
        self.retry_after = retry_after


class Overloaded(ServiceUnavailable):
    slug = "overloaded"
    title = "Overloaded"


class DatabaseUnavailable(ServiceUnavailable):
    slug = "database-unavailable"
    title = "Database unavailable"


class DeadlineExceeded(ServiceUnavailable):
    """The request's time ran out while it waited on the database (a lock, a slow statement)."""

    slug = "deadline-exceeded"
    title = "Request deadline exceeded"
