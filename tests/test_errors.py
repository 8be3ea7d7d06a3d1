from __future__ import annotations

import pytest

from server import errors
from server.errors import AppError, registered_slugs


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
