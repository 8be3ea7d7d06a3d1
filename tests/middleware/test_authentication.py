from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from middleware.authentication import AuthenticationMiddleware


class Refused(Exception):
    pass


async def authenticate(credentials: str, scope: Scope) -> dict[str, str]:
    if credentials == "Bearer good":
        return {"who": "alice"}
    if credentials == "ApiKey key-1":
        return {"who": "robot"}
    if credentials == "Bearer crash":
        raise RuntimeError("a bug")
    raise Refused(credentials)


def on_error(exc: Exception) -> ASGIApp:
    return JSONResponse({"refused": str(exc)}, status_code=401)


async def whoami(request: Request) -> Response:
    return JSONResponse({"principal": request.scope.get("principal")})


def client() -> httpx.AsyncClient:
    app = AuthenticationMiddleware(
        Starlette(routes=[Route("/", whoami), Route("/metrics", whoami)]),
        authenticate=authenticate,
        on_error=on_error,
        handled=(Refused,),
        own_auth_paths=frozenset({"/metrics"}),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_no_credentials_is_anonymous() -> None:
    async with client() as http:
        assert (await http.get("/")).json() == {"principal": None}


async def test_good_credentials_become_the_principal_from_either_header() -> None:
    async with client() as http:
        bearer = await http.get("/", headers={"authorization": "Bearer good"})
        api_key = await http.get("/", headers={"x-api-key": "key-1"})
        both = await http.get("/", headers={"x-api-key": "key-1", "authorization": "Bearer good"})
    assert bearer.json() == {"principal": {"who": "alice"}}
    # X-API-Key arrives under its own scheme, so a session token cannot ride in it.
    assert api_key.json() == {"principal": {"who": "robot"}}
    assert both.json() == {"principal": {"who": "alice"}}


async def test_bad_credentials_never_fall_back_to_anonymous() -> None:
    async with client() as http:
        response = await http.get("/", headers={"authorization": "Bearer forged"})
    assert response.status_code == 401
    assert response.json() == {"refused": "Bearer forged"}


async def test_a_bug_in_authenticate_is_not_turned_into_a_401() -> None:
    async with client() as http:
        with pytest.raises(RuntimeError, match="a bug"):
            await http.get("/", headers={"authorization": "Bearer crash"})


async def test_paths_with_their_own_auth_are_left_alone() -> None:
    async with client() as http:
        response = await http.get("/metrics", headers={"authorization": "Bearer scrape-token"})
    assert response.status_code == 200
    assert response.json() == {"principal": None}


def test_collaborators_must_be_callable() -> None:
    bad: Any = "not callable"
    with pytest.raises(TypeError):
        AuthenticationMiddleware(Starlette(), authenticate=bad, on_error=on_error, handled=())
