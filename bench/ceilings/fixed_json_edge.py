"""Ceiling 1b: ``fixed_json``'s callable doing the jobs hotpath's stack does for ``GET /livez``,
in the cheapest form: fused into one function.

What it does per request, as production does it: the request id (a sane incoming one or a new
one, in the scope, in structlog's context and on the answer) and a caller's ``traceparent``;
the access-log line, the same line through the same logger into the same buffered stdout
writer (flushed every 0.5 s by the lifespan, as hotpath's housekeeping does); the same metrics
(the in-flight gauge and ``HttpMetrics.observe``); the request deadline's context variable;
the body limit's header check; the same security headers (HSTS on, as in production) and the
handler's ``cache-control: no-store``. What it leaves out is structure: no layers, routing,
Starlette request or response objects; one coroutine frame and one pass over the headers.

``ping`` over this ceiling is what hotpath's structure costs; this ceiling over ``fixed_json``
is what the jobs themselves cost (make bench reports both, measured in alternation).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import ContextVar
from time import monotonic, perf_counter, perf_counter_ns
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from middleware.metrics import HttpMetrics
from middleware.request_id import _SANE_ID, REQUEST_ID_FIELD, _new_id, structlog_var
from middleware.security_headers import _API_CSP, _BASE_HEADERS
from middleware.trace_context import TRACEPARENT, parse_traceparent
from server.runtime.logs import configure_logging, flush_logs, request_line_logger

_BODY = orjson.dumps({"status": "ok"})
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_HEADERS = (
    (b"content-length", str(len(_BODY)).encode()),
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    *_BASE_HEADERS,
    _HSTS,
    _API_CSP,
)
_RESPONSE = {"type": "http.response.body", "body": _BODY}
_ROUTE = "/livez"
_TIMEOUT = 10.0  # HOTPATH_REQUEST_TIMEOUT's default
_MAX_USER_AGENT = 256

# Set up by the lifespan as create_app does it (a test sets its own: importing configures
# nothing).
_lines: Any = None
_metrics = HttpMetrics(registry=None)
_request_id = structlog_var(REQUEST_ID_FIELD)
_deadline: ContextVar[float] = ContextVar("ceiling_deadline")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    start_ns = perf_counter_ns()
    start = perf_counter()
    incoming = user_agent = traceparent = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if incoming is None:
                incoming = value
        elif name == TRACEPARENT:
            traceparent = value
        elif name == b"user-agent":
            user_agent = value[:_MAX_USER_AGENT].decode("latin-1")
        elif name == b"content-length" or name == b"transfer-encoding":
            raise NotImplementedError("the ceiling answers bodiless requests only")
    request_id = (
        incoming.decode("ascii") if incoming is not None and _SANE_ID(incoming) else _new_id()
    )
    scope["request_id"] = request_id
    _request_id.set(request_id)
    parent = None if traceparent is None else parse_traceparent(traceparent)
    _deadline.set(monotonic() + _TIMEOUT)
    method = scope["method"]
    active = _metrics.active
    active[method] = active.get(method, 0) + 1
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_HEADERS, (b"x-request-id", request_id.encode("ascii"))],
        }
    )
    await send(_RESPONSE)
    active[method] -= 1
    _metrics.observe(method, _ROUTE, 200, perf_counter() - start)
    client = scope.get("client")
    _lines.info(
        "http_request",
        method=method,
        path=scope["path"],
        route=_ROUTE,
        status=200,
        duration_ns=perf_counter_ns() - start_ns,
        bytes=len(_BODY),
        client_ip=client[0] if client else None,
        user_agent=user_agent,
        error=None,
        request_id=request_id,
        trace_id=None if parent is None else parent.trace_id,
        span_id=None if parent is None else parent.parent_id,
    )


async def _lifespan(receive: Receive, send: Send) -> None:
    global _lines
    await receive()  # startup
    configure_logging("info")
    _lines = request_line_logger()
    flushing = asyncio.create_task(_flush_every(0.5))
    await send({"type": "lifespan.startup.complete"})
    await receive()  # shutdown
    flushing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flushing
    flush_logs()
    await send({"type": "lifespan.shutdown.complete"})


async def _flush_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        flush_logs()
