"""The lifespan-built container, typed: handlers reach their services through it, so mypy
checks every handler -> service call (``app.state`` itself is untyped)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request

if TYPE_CHECKING:
    # Type-only: server.container imports every domain's service, and their handlers import
    # this module.
    from server.container import Container


def container(request: Request) -> Container:
    """The container of the app serving ``request`` (a plain attribute read)."""
    found: Container = request.app.state.container
    return found


def app_container(app: Starlette) -> Container:
    """The same from the app, for code holding the app rather than a request (tests)."""
    found: Container = app.state.container
    return found
