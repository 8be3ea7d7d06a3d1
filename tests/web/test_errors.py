from __future__ import annotations

import io

import orjson
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from structlog.typing import FilteringBoundLogger

from server.web import errors
from server.web.errors import AppError, registered_slugs
from server.web.problem import exception_handlers


def test_slugs_are_unique_and_every_error_is_registered() -> None:
    slugs = registered_slugs()
    classes = set()
    stack: list[type[AppError]] = [AppError]
    while stack:
        cls = stack.pop()
        classes.add(cls)
        stack.extend(cls.__subclasses__())
    assert {cls.slug for cls in classes} == set(slugs)
    for slug, cls in slugs.items():
        assert cls.slug == slug


def test_a_reused_slug_fails_at_definition() -> None:
    with pytest.raises(TypeError, match="already used"):

        class Duplicate(AppError):
            slug = "not-found"


def test_statuses_are_http_errors() -> None:
    for cls in registered_slugs().values():
        assert 400 <= cls.status <= 599, cls


def test_service_unavailable_carries_retry_after() -> None:
    exc = errors.DatabaseUnavailable(retry_after=3)
    assert exc.status_code == 503
    assert exc.headers["retry-after"] == "3"


async def test_outages_are_logged_with_their_cause_once_a_second_per_kind(
    logger: FilteringBoundLogger, log_stream: io.BytesIO
) -> None:
    known = exception_handlers(logger)[errors.AppError]
    request = Request({"type": "http", "method": "GET", "path": "/v1/x", "headers": []})
    for _ in range(5):
        try:
            raise errors.DatabaseUnavailable("no connection") from TimeoutError()
        except errors.DatabaseUnavailable as exc:
            answer = await known(request, exc)
        assert answer.status_code == 503
    await known(request, errors.NotFound("gone"))  # a 4xx is never logged
    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    logged = [line for line in lines if line["message"] == "service_unavailable"]
    assert len(logged) == 1
    assert logged[0]["cause"] == "TimeoutError"
    assert logged[0]["problem"] == "database-unavailable"


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (errors.HttpError(418), False),
        (HTTPException(418), False),
        (errors.HttpError(502), True),
        (HTTPException(504), True),
    ],
)
async def test_only_a_5xx_without_its_own_class_is_logged_as_an_outage(
    logger: FilteringBoundLogger,
    log_stream: io.BytesIO,
    exc: errors.HttpError | HTTPException,
    outage: bool,
) -> None:
    # HttpError's class status is 500; what counts is the status it answers with.
    known = exception_handlers(logger)[errors.AppError]
    request = Request({"type": "http", "method": "GET", "path": "/v1/x", "headers": []})
    answer = await known(request, exc)
    assert answer.status_code == exc.status_code
    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    logged = [line for line in lines if line["message"] == "service_unavailable"]
    assert len(logged) == (1 if outage else 0)
