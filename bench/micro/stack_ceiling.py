"""A lower bound for the middleware stack: its five jobs fused into one layer.

Not used by the server. It does what the stack does for a GET without a body (request id,
access-log line, metrics, security headers, the body-limit header check) with every shortcut
the real stack cannot take: one coroutine instead of five layers, one pass over the request
headers, one send wrapper, and the log line rendered by orjson straight into the buffered
stream instead of through a logger's call. What it costs over the bare handler is the least any
stack doing these jobs per request could cost; test_middleware_stack.py reports it beside the
real one.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable
from contextvars import ContextVar
from time import perf_counter
from typing import BinaryIO

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.metrics import DURATION_BUCKETS
from middleware.request_id import _SANE_ID, _new_id
from middleware.security_headers import _API_CSP, _BASE_HEADERS
from middleware.types import route_template
from server.runtime.logs import ECS_VERSION, timestamp

_HEADERS = (*_BASE_HEADERS, _API_CSP)
_CREDENTIALS = frozenset((b"authorization", b"x-api-key", b"cookie"))
_REQUEST_ID: ContextVar[str] = ContextVar("ceiling_request_id")


class FusedStack:
    def __init__(self, app: ASGIApp, *, stream: BinaryIO) -> None:
        self.app = app
        self.write = stream.write
        self.active = 0
        self.series: dict[tuple[str, str, int], list[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = user_agent = None
        credentialed = has_body = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("ascii") if _SANE_ID(value) else None
            elif name == b"user-agent":
                user_agent = value[:256].decode("latin-1")
            elif name == b"content-length" or name == b"transfer-encoding":
                has_body = True
            elif name in _CREDENTIALS:
                credentialed = True
        if has_body:
            raise NotImplementedError("the ceiling models bodiless requests only")
        if request_id is None:
            request_id = _new_id()
        scope["request_id"] = request_id
        _REQUEST_ID.set(request_id)
        echoed = (b"x-request-id", request_id.encode("ascii"))
        extra = (*_HEADERS, (b"cache-control", b"no-store")) if credentialed else _HEADERS
        status, size = 500, 0

        def send_all(message: Message) -> Awaitable[None]:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message["headers"], echoed, *extra]
            else:
                size += len(message.get("body", b""))
            return send(message)

        self.active += 1
        start = perf_counter()
        try:
            await self.app(scope, receive, send_all)
        finally:
            self.active -= 1
        seconds = perf_counter() - start
        route = route_template(scope)
        key = (scope["method"], route, status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0.0] * (len(DURATION_BUCKETS) + 2)
        series[bisect_left(DURATION_BUCKETS, seconds)] += 1
        series[-1] += seconds
        client = scope.get("client")
        line = {
            "@timestamp": timestamp(),
            "log.level": "info",
            "message": "http_request",
            "http.request.method": scope["method"],
            "url.path": scope["path"],
            "http.route": route,
            "http.response.status_code": status,
            "event.duration": int(seconds * 1e9),
            "http.response.body.bytes": size,
        }
        if client:
            line["client.ip"] = client[0]
        if user_agent is not None:
            line["user_agent.original"] = user_agent
        line["http.request.id"] = request_id
        line["ecs.version"] = ECS_VERSION
        self.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
