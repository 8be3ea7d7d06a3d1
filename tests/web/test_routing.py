"""The indexed router answers exactly as Starlette's own walk does, for every route of the app
and for the paths around them (parameters, trailing slashes, unknown paths, wrong methods), but
for one thing: a 405's `Allow` names every method the path has, where Starlette's names those of
the first route that matched it (routes.py declares one route per method)."""

from __future__ import annotations

import re

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

from server.routes import build_routes
from server.web.routing import IndexedRouter

METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
EVERY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def echo_routes() -> list[BaseRoute]:
    """The app's route table with every endpoint replaced by one naming the route it is."""
    # First in line, so a PUT to a product goes here, not to a 405 of the product routes.
    routes: list[BaseRoute] = [
        Route("/{first}/products/{id}", lambda r: PlainTextResponse("put"), methods=["PUT"])
    ]
    for route in build_routes(lambda: b"{}"):
        if isinstance(route, Route):

            async def endpoint(request: Request, path: str = route.path) -> PlainTextResponse:
                return PlainTextResponse(f"{path} {dict(request.path_params)}")

            routes.append(Route(route.path, endpoint, methods=route.methods))
        else:
            routes.append(route)
    routes.append(Route("/{first}/fixed", endpoint=lambda r: PlainTextResponse("param-first")))
    # A parameter that spans slashes: its route is tried for paths of every length.
    routes.append(Route("/v1/files/{rest:path}", lambda r: PlainTextResponse("file")))
    routes.append(Route("/v1/files/{name}/meta", lambda r: PlainTextResponse("meta")))
    routes.append(Mount("/mounted", routes=[Route("/x", lambda r: PlainTextResponse("m"))]))
    return routes


def probe_paths(routes: list[BaseRoute]) -> list[str]:
    paths = {
        "/",
        "/nope",
        "/v1",
        "/v1/",
        "/v1/nope",
        "/anything/fixed",
        "/v1/auth",
        "/mounted/x",
        "/mounted",
        "/v1/files/a",
        "/v1/files/a/b/c",
        "/v1/files/a/meta",
    }
    for route in routes:
        if isinstance(route, Route):
            for value in ("7", "abc"):
                concrete = re.sub(r"\{[^}]+\}", value, route.path)
                paths |= {concrete, concrete + "/", concrete + "/extra"}
    return sorted(paths)


async def test_every_path_and_method_is_answered_as_starlette_answers_it() -> None:
    routes = echo_routes()
    indexed_app = Starlette()
    indexed_app.router = IndexedRouter(routes)
    plain = httpx.AsyncClient(
        transport=httpx.ASGITransport(Starlette(routes=routes)), base_url="http://t"
    )
    indexed = httpx.AsyncClient(transport=httpx.ASGITransport(indexed_app), base_url="http://t")
    paths = probe_paths(echo_routes())
    assert len(paths) > 100
    seen = set()
    for path in paths:
        for method in METHODS:
            expected = await plain.request(method, path, follow_redirects=False)
            got = await indexed.request(method, path, follow_redirects=False)
            assert (got.status_code, got.text, got.headers.get("location")) == (
                expected.status_code,
                expected.text,
                expected.headers.get("location"),
            ), (method, path)
            if got.status_code == 405:
                # The path sent: httpx reads "//" (the root route's probe + "/") as "/".
                sent = got.request.url.path
                assert allowed(got) == methods_of(routes, sent), (method, path)
            seen.add(expected.status_code)
    assert {200, 404, 405, 307} <= seen  # the probe reaches every kind of answer


def test_a_request_tries_only_the_routes_of_its_prefix() -> None:
    router = IndexedRouter(echo_routes())
    every = len(router.routes)
    product = router._candidates("/v1/products/7")
    assert 2 <= len(product) < every / 4
    assert all(
        getattr(route, "path", "").startswith("/v1/products")
        or not isinstance(route, Route)
        or "{" in route.path.split("/")[1]
        for route in product
    )
    assert router._candidates("/unknown/path") == router._candidates("/other")


def allowed(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


def methods_of(routes: list[BaseRoute], path: str) -> set[str]:
    """Every method some route serves at `path` (an independent oracle: each route's regex)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
        elif isinstance(route, Mount) and (inside := route.path_regex.match(path)):
            methods |= methods_of(route.routes, "/" + inside["path"])
    return methods


def concrete(template: str) -> str:
    # "1" matches every parameter of the table and names no literal segment.
    return re.sub(r"\{[^}]+\}", "1", template)


async def test_a_405_allows_every_method_of_its_path_template() -> None:
    app = Starlette()
    app.router = IndexedRouter(build_routes(lambda: b"{}"))
    table: dict[str, set[str]] = {}
    for route in app.router.routes:
        if isinstance(route, Route):
            table.setdefault(route.path, set()).update(route.methods or ())
    assert {"PATCH", "DELETE"} <= table["/v1/products/{product_id}"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        probed = 0
        for template, methods in table.items():
            assert "GET" not in methods or "HEAD" in methods, template
            for method in sorted(set(EVERY_METHOD) - methods):
                response = await client.request(method, concrete(template))
                assert response.status_code == 405, (method, template)
                assert allowed(response) == methods, (method, template)
                probed += 1
    assert probed > len(table)


class _Picked(Route):
    """A route that matches its own way (only a request with X-Pick): the router must ask it,
    in its place in the order."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (b"x-pick", b"1") not in scope["headers"]:
            return Match.NONE, {}
        return super().matches(scope)


async def test_inline_matching_gives_the_scope_route_matches_gives() -> None:
    async def show(request: Request) -> PlainTextResponse:
        params = ",".join(f"{k}={v!r}" for k, v in sorted(request.path_params.items()))
        return PlainTextResponse(f"{request.scope['endpoint'].__name__} {params}")

    async def other(request: Request) -> PlainTextResponse:
        return PlainTextResponse("other")

    routes: list[BaseRoute] = [
        Route("/n/{n:int}", show),  # a convertor that changes the value
        Route("/s/{name}", show, methods=["POST"]),
        Route("/s/{name}", other),
        _Picked("/pick", other),
        Route("/pick", show),
        Mount("/t/{tenant}", routes=[Route("/items/{item}", show)]),  # the mount's params too
    ]
    indexed = Starlette()
    indexed.router = IndexedRouter(routes)
    plain = Starlette(routes=routes)
    cases = [
        ("GET", "/n/12"),
        ("GET", "/n/x"),
        ("POST", "/s/a"),
        ("GET", "/s/a"),
        ("DELETE", "/s/a"),
        ("GET", "/pick"),
        ("GET", "/t/acme/items/9"),
    ]
    for method, path in cases:
        got = await _answer(indexed, method, path)
        assert got == await _answer(plain, method, path), (method, path)
    picked = {"x-pick": "1"}
    assert await _answer(indexed, "GET", "/pick", picked) == (200, "other")
    assert await _answer(indexed, "GET", "/pick") == (200, "show ")
    assert await _answer(indexed, "GET", "/n/12") == (200, "show n=12")
    assert await _answer(indexed, "GET", "/t/acme/items/9") == (200, "show item='9',tenant='acme'")


async def _answer(
    app: Starlette, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.request(method, path, headers=headers)
        return response.status_code, response.text
