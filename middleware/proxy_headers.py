"""Client address and scheme from X-Forwarded-For/-Proto, believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED_FOR = b"x-forwarded-for"
_FORWARDED_PROTO = b"x-forwarded-proto"
_SCHEMES = {b"http": "http", b"https": "https"}
_NOT_AN_ADDRESS, _UNTRUSTED, _TRUSTED = range(3)
_MAX_KEPT = 1024
_MAX_KEPT_LENGTH = 64  # an IPv6 address with a zone id fits


class ProxyHeadersMiddleware:
    """Rewrite ``scope["client"]`` (and ``scope["scheme"]``) when the peer is a trusted proxy.

    X-Forwarded-For is read right to left, skipping trusted proxies: the first address that is
    not one of ours is the client. Anything left of it was written by the client and is ignored,
    so a client cannot choose its own address (which rate limits and logs rely on).
    """

    def __init__(self, app: ASGIApp, *, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in trusted
        )
        if not self.networks:
            raise ValueError("trusted must name at least one network")
        self._kinds: dict[str, int] = {}

    def trusted(self, host: str) -> bool:
        return self._kind(host) == _TRUSTED

    def _kind(self, host: str) -> int:
        # Parsing an address and testing it against each network costs several times the rest
        # of the layer; the peers (our proxies) are a handful of addresses, so it is remembered
        # per address text, bounded in entries and in key length (the hops come from a header).
        kind = self._kinds.get(host)
        if kind is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                kind = _NOT_AN_ADDRESS
            else:
                trusted = any(address in network for network in self.networks)
                kind = _TRUSTED if trusted else _UNTRUSTED
            if len(host) <= _MAX_KEPT_LENGTH:
                if len(self._kinds) >= _MAX_KEPT:
                    self._kinds.clear()
                self._kinds[host] = kind
        return kind

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: the inner app's awaitable is handed back, so this layer adds no
        # frame that every await below would resume through.
        client = scope.get("client")
        if scope["type"] == "http" and client and self.trusted(client[0]):
            forwarded: list[bytes] = []
            proto = None
            for name, value in scope["headers"]:
                if name == _FORWARDED_FOR:
                    forwarded.append(value)
                elif name == _FORWARDED_PROTO:
                    proto = value.strip().lower()
            if forwarded:
                scope["client"] = (self._client(b",".join(forwarded), client[0]), 0)
            if proto in _SCHEMES:
                scope["scheme"] = _SCHEMES[proto]
        return self.app(scope, receive, send)

    def _client(self, header: bytes, peer: str) -> str:
        client = peer
        for hop in reversed(header.decode("latin-1").split(",")):
            hop = hop.strip()
            kind = self._kind(hop)
            if kind == _NOT_AN_ADDRESS:
                break
            client = hop
            if kind == _UNTRUSTED:
                break
        return client
