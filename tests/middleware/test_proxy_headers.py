from __future__ import annotations

import ipaddress

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from middleware import ProxyHeadersMiddleware


async def whoami(request: Request) -> Response:
    client = request.client.host if request.client else None
    return JSONResponse({"client": client, "scheme": request.url.scheme})


def client(
    peer: str, trusted: tuple[str, ...] = ("10.0.0.0/8", "127.0.0.1/32")
) -> httpx.AsyncClient:
    app = ProxyHeadersMiddleware(Starlette(routes=[Route("/", whoami)]), trusted=trusted)
    transport = httpx.ASGITransport(app=app, client=(peer, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_trusted_proxy_forwards_the_client_and_scheme() -> None:
    async with client("10.0.0.2") as http:
        response = await http.get(
            "/", headers={"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
        )
    assert response.json() == {"client": "203.0.113.7", "scheme": "https"}


async def test_untrusted_peer_cannot_choose_its_address() -> None:
    async with client("198.51.100.9") as http:
        response = await http.get(
            "/", headers={"x-forwarded-for": "1.2.3.4", "x-forwarded-proto": "https"}
        )
    assert response.json() == {"client": "198.51.100.9", "scheme": "http"}


async def test_client_written_hops_left_of_the_first_untrusted_are_ignored() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; our two proxies appended what they saw.
    async with client("10.0.0.2") as http:
        response = await http.get(
            "/", headers={"x-forwarded-for": "1.2.3.4, 198.51.100.9, 10.0.0.3"}
        )
    assert response.json()["client"] == "198.51.100.9"


async def test_garbage_hops_stop_the_walk() -> None:
    async with client("127.0.0.1") as http:
        response = await http.get("/", headers={"x-forwarded-for": "1.2.3.4, not-an-ip, 10.0.0.3"})
    assert response.json()["client"] == "10.0.0.3"


def test_needs_at_least_one_network() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ProxyHeadersMiddleware(Starlette(), trusted=())


async def test_the_layer_hands_back_the_inner_apps_awaitable() -> None:
    # No coroutine of its own: a frame every await below would otherwise resume through.
    scopes: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    layer = ProxyHeadersMiddleware(inner, trusted=("10.0.0.0/8",))
    scope = {
        "type": "http",
        "client": ("10.0.0.2", 1),
        "headers": [(b"x-forwarded-for", b"203.0.113.7")],
    }
    awaitable = layer(scope, receive, send)
    assert awaitable.cr_code is inner.__code__  # type: ignore[attr-defined]
    await awaitable
    assert scopes[0]["client"] == ("203.0.113.7", 0)


HOSTS = ["10.0.0.2", "10.255.255.255", "11.0.0.1", "127.0.0.1", "127.0.0.2", "::1", "fe80::1%eth0",
         "::ffff:10.0.0.2", "not-an-ip", "", " 10.0.0.2", "10.0.0.256", "1" * 80]  # fmt: skip


def test_what_is_remembered_agrees_with_the_networks_and_stays_bounded() -> None:
    layer = ProxyHeadersMiddleware(Starlette(), trusted=("10.0.0.0/8", "127.0.0.1/32"))
    for _ in range(2):  # the second pass answers from what the first kept
        for host in HOSTS:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                expected = False
            else:
                expected = any(address in network for network in layer.networks)
            assert layer.trusted(host) is expected, host
    assert "1" * 80 not in layer._kinds  # too long to be an address worth keeping
    for index in range(3000):
        layer.trusted(f"192.0.2.{index % 256}:{index}")
    assert len(layer._kinds) <= 1024
