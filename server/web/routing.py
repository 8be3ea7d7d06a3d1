"""A router that tries only the routes that can match a path, not all of them.

Starlette's router runs every route's regex in order until one matches: with some forty routes
that cost more than the rest of a cached product read. Routes are filed by the first two
segments of their path when those are literal, and by how many segments it has when no
parameter can span a slash; a request tries its file plus the routes whose first segments are
parameters (or mounts), in the original order. When none of those matches fully or partially,
Starlette's own walk runs, so 404s and slash redirects are unchanged. (Filed by the first two
segments alone, a product read tried ``/v1/products`` twice before its own route: each try is a
regex and a scope lookup, about 4% of a warm read in process.)

A file's routes are kept with what matching a plain Route needs (its regex's match, its methods,
its convertors when one changes the value), so the router matches them inline rather than
through Route.matches, which gets the route path again, copies the scope's path parameters and
builds a child scope and a (Match, dict) tuple for every try (the indexed router called for a
product read, callgrind: about 24,000 instructions). Routes of another kind (mounts, a
subclass that matches its own way) are asked as before, in their place in the order.

A 405 differs on purpose: Starlette answers it from the first route whose path matched, and
routes.py declares one route per method, so `Allow` named one method of several. Here it names
every method of every route matching the path (RFC 9110 15.5.6).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeGuard

from starlette._utils import get_route_path
from starlette.convertors import (
    Convertor,
    FloatConvertor,
    IntegerConvertor,
    StringConvertor,
    UUIDConvertor,
)
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import Receive, Scope, Send

# Convertors whose values never hold a slash: a path's segments are its route's.
_ONE_SEGMENT = (StringConvertor, IntegerConvertor, FloatConvertor, UUIDConvertor)
_ANY_LENGTH = -1
# Module constants: an Enum member read through its class costs a lookup on every try.
_FULL, _PARTIAL = Match.FULL, Match.PARTIAL


def _key(path: str) -> str:
    return "/".join(path.split("/", 3)[1:3])


def _route_key(route: BaseRoute) -> str | None:
    """The key every path this route matches has; None when it can't be known (parameters
    in the first segments, mounts, anything not a plain Route)."""
    if not isinstance(route, Route):
        return None
    key = _key(route.path)
    return None if "{" in key else key


def _route_length(route: BaseRoute) -> int:
    """How many slashes every path this route matches has; _ANY_LENGTH when a parameter may
    hold one (a ``path`` convertor) or the route is not a plain Route."""
    if not isinstance(route, Route):
        return _ANY_LENGTH
    if not all(isinstance(c, _ONE_SEGMENT) for c in route.param_convertors.values()):
        return _ANY_LENGTH
    return route.path.count("/")


def _plain(route: BaseRoute) -> TypeGuard[Route]:
    return isinstance(route, Route) and type(route).handle is Route.handle


class _Entry:
    """A candidate route with what matching it inline needs; ``match`` is None for a route
    that is not a plain Route (it matches, and is handled, its own way)."""

    __slots__ = ("convertors", "match", "methods", "plain", "route")

    def __init__(self, route: BaseRoute) -> None:
        self.route = route
        self.plain: Route | None = None
        self.match: Callable[[str], re.Match[str] | None] | None = None
        self.methods: frozenset[str] | None = None
        self.convertors: Mapping[str, Convertor[Any]] | None = None
        if _plain(route) and type(route).matches is Route.matches:
            self.plain = route
            self.match = route.path_regex.match
            # Route.matches: no methods (or none listed) takes every method.
            self.methods = frozenset(route.methods) if route.methods else None
            if not all(type(c) is StringConvertor for c in route.param_convertors.values()):
                self.convertors = route.param_convertors


Files = dict[tuple[str, int], list[_Entry]]
Indexed = tuple[int, Files, dict[str, list[_Entry]], list[_Entry]]


class IndexedRouter(Router):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._indexed: Indexed | None = None

    def _entries(self, path: str) -> list[_Entry]:
        indexed = self._indexed
        if indexed is None or indexed[0] != len(self.routes):
            indexed = self._indexed = self._index()
        key = "/".join(path.split("/", 3)[1:3])  # _key, inline: a call fewer a request
        found = indexed[1].get((key, path.count("/")))
        if found is not None:
            return found
        return indexed[2].get(key, indexed[3])

    def _candidates(self, path: str) -> list[BaseRoute]:
        """The routes a request for ``path`` tries, in order."""
        return [entry.route for entry in self._entries(path)]

    def _index(self) -> Indexed:
        entries = {id(route): _Entry(route) for route in self.routes}
        filed = [(route, _route_key(route), _route_length(route)) for route in self.routes]
        anywhere = [entries[id(route)] for route, key, _ in filed if key is None]
        by_key: dict[str, list[_Entry]] = {}
        files: Files = {}
        for key in dict.fromkeys(k for _, k, _ in filed if k is not None):
            # A path of this key with a length no route of it has: the routes of any length.
            by_key[key] = [
                entries[id(route)]
                for route, k, n in filed
                if k is None or (k == key and n == _ANY_LENGTH)
            ]
            for length in dict.fromkeys(n for _, k, n in filed if k == key and n != _ANY_LENGTH):
                files[key, length] = [
                    entries[id(route)]
                    for route, k, n in filed
                    if k is None or (k == key and n in (length, _ANY_LENGTH))
                ]
        return len(self.routes), files, by_key, anywhere

    def app(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        # Not a coroutine: a matched route's own awaitable is handed back, a frame fewer.
        if scope["type"] != "http":
            return super().app(scope, receive, send)
        if "router" not in scope:
            scope["router"] = self
        path = get_route_path(scope)
        method = scope["method"]
        outer = scope.get("path_params")  # a mount's, merged as Route.matches merges them
        partial: BaseRoute | None = None
        partial_scope: Scope | None = None
        entries = self._entries(path)
        for entry in entries:
            plain = entry.plain
            match = entry.match
            if plain is None or match is None:
                route = entry.route
                kind, child_scope = route.matches(scope)
                if kind is _FULL:
                    scope["route"] = route
                    scope.update(child_scope)
                    return route.handle(scope, receive, send)
                if kind is _PARTIAL and partial is None:
                    partial, partial_scope = route, child_scope
                continue
            found = match(path)
            if found is None:
                continue
            # What Route.matches puts in the child scope, without building it.
            params = found.groupdict()
            convertors = entry.convertors
            if convertors is not None:
                for name, value in params.items():
                    params[name] = convertors[name].convert(value)
            if outer:
                params = {**outer, **params}
            methods = entry.methods
            if methods is None or method in methods:
                # A full match of a plain route means its method is allowed: handle() would
                # only call route.app.
                scope["route"] = plain
                scope["endpoint"] = plain.endpoint
                scope["path_params"] = params
                return plain.app(scope, receive, send)
            if partial is None:
                partial = plain
                partial_scope = {"endpoint": plain.endpoint, "path_params": params}
        if partial is not None and partial_scope is not None:
            # Off the hot path: no route took the method, so the candidates are walked again.
            allowed = _allowed(scope, [entry.route for entry in entries])
            scope["route"] = partial
            scope.update(partial_scope)
            if allowed is None:
                return partial.handle(scope, receive, send)
            return _method_not_allowed(scope, receive, send, allowed)
        return super().app(scope, receive, send)

    def route_for(self, scope: Scope) -> BaseRoute | None:
        """The route the request's path names, whatever its method (None: no route has that
        path): the label of a request answered before routing, a 401 or a 429 say. A mount's
        label needs the root path its matching would have set, so a mount is not resolved."""
        for route in self._candidates(get_route_path(scope)):
            if route.matches(scope)[0] is not Match.NONE:
                return None if isinstance(route, Mount) else route
        return None


def _allowed(scope: Scope, candidates: Iterable[BaseRoute]) -> str | None:
    """The Allow value: every method of every route whose path matches (Route adds HEAD to
    GET); None when such a route answers a wrong method its own way (handle overridden)."""
    methods: set[str] = set()
    for route in candidates:
        if route.matches(scope)[0] is Match.PARTIAL:
            if not _plain(route):
                return None
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _method_not_allowed(scope: Scope, receive: Receive, send: Send, allow: str) -> None:
    # As Route.handle answers it, with the whole Allow.
    headers = {"Allow": allow}
    if "app" in scope:
        raise HTTPException(status_code=405, headers=headers)
    response = PlainTextResponse("Method Not Allowed", status_code=405, headers=headers)
    await response(scope, receive, send)
