"""Handlers find the lifespan's container on the app serving the request."""

from __future__ import annotations

from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request

from server.web.state import app_container, attach_container, container


def test_an_attached_container_is_what_handlers_and_tests_find() -> None:
    app = Starlette()
    found = cast(Any, object())
    attach_container(app, found)
    request = Request({"type": "http", "app": app, "headers": []})
    assert container(request) is found
    assert app_container(app) is found
    assert app.state.container is found
