"""Ceiling 3b: an anonymous ``GET /v1/products?limit=N[&cursor=C]``, hotpath's jobs for it fused
into one function around ``ceiling_list``'s page (bench/ceilings/list_page.py's ``page``, the
same statement and encoding).

The jobs, each through hotpath's code where that is the cheapest form there is: the edge's
(request id and ``traceparent``, access-log line, metrics, deadline, security headers), the
read budget per client address (``RouteClasses``, ``RateLimiter.admit`` or ``check``,
``rate_limit_headers``), the query's validation (``read_query`` into ``ProductQuery``, its
rules and cursor scope by ``listing_of``, the cursor checked by ``after``). Left out: layers,
router, Starlette's request and response.

``make bench`` serves it as ``ceiling_list_edge`` beside ``product_list_first`` and
``product_list_deep`` in the budget rounds; the report splits each list's ratio into these jobs
and hotpath's structure. It answers what the bench sends (the default listing, no credentials);
tests/bench checks it answers what hotpath answers, byte for byte.
"""

from __future__ import annotations

from contextvars import ContextVar
from time import monotonic, perf_counter, perf_counter_ns
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from bench.ceilings import list_page
from bench.ceilings.edge_jobs import Jobs, lifespan
from bench.ceilings.list_page import _ceiling, page
from middleware.metrics import HttpMetrics
from middleware.request_id import _SANE_ID, REQUEST_ID_FIELD, _new_id, structlog_var
from middleware.security_headers import _API_CSP, _BASE_HEADERS
from middleware.trace_context import TRACEPARENT, parse_traceparent
from server.catalog.listing import after, listing_of
from server.catalog.schemas import ProductQuery
from server.web.responses import read_query

_ROUTE = "/v1/products"
_MAX_USER_AGENT = 256
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_TAIL = (*_BASE_HEADERS, _HSTS, _API_CSP)  # no credentials: no no-store

_jobs: Jobs | None = None
_metrics = HttpMetrics(registry=None)
_request_id = structlog_var(REQUEST_ID_FIELD)
_deadline: ContextVar[float] = ContextVar("ceiling_deadline")


class _Query:
    """What ``read_query`` reads of a request: its scope (the query string)."""

    __slots__ = ("scope",)

    def __init__(self, scope: Scope) -> None:
        self.scope = scope


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(_ceiling, receive, send, _started)
        return
    jobs = _jobs
    assert jobs is not None, "the lifespan has not run"
    start_ns = perf_counter_ns()
    start = perf_counter()
    incoming = user_agent = traceparent = None
    host = b""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"x-request-id":
            if incoming is None:
                incoming = value
        elif name == TRACEPARENT:
            traceparent = value
        elif name == b"user-agent":
            user_agent = value[:_MAX_USER_AGENT].decode("latin-1")
        elif name in (b"authorization", b"x-api-key", b"cookie", b"content-length"):
            raise NotImplementedError("the ceiling answers what make bench sends only")
    request_id = (
        incoming.decode("ascii") if incoming is not None and _SANE_ID(incoming) else _new_id()
    )
    scope["request_id"] = request_id
    _request_id.set(request_id)
    parent = None if traceparent is None else parse_traceparent(traceparent)
    _deadline.set(monotonic() + jobs.timeout)
    method = scope["method"]
    active = _metrics.active
    active[method] = active.get(method, 0) + 1
    scope["principal"] = None  # anonymous, as hotpath's authentication layer leaves it
    limits = jobs.admitted(scope)
    if limits is None:
        limits = await jobs.decided(scope)  # no lease yet: one Redis call, as hotpath makes it
    query_string: bytes = scope["query_string"]
    query: Any = _Query(scope)
    listing = listing_of(read_query(query, ProductQuery))
    if listing.sort != "created_at" or listing.direction != "asc" or listing.query.q:
        raise NotImplementedError("the ceiling pages the default listing only")
    position = after(listing, list_page._cursors)
    params = dict(parse_qsl(query_string.decode()))  # as ceiling_list reads them
    path: str = scope["path"]
    body, headers = await page(
        _ceiling,
        params,
        listing.query.limit,
        (None, None) if position is None else position,
        f"http://{host.decode('latin-1')}{path}",
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                headers[0],
                (b"content-length", str(len(body)).encode()),
                *headers[1:],
                *limits,
                *_TAIL,
                (b"x-request-id", request_id.encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    active[method] -= 1
    _metrics.observe(method, _ROUTE, 200, perf_counter() - start)
    client = scope.get("client")
    jobs.lines.info(
        "http_request",
        method=method,
        path=path,
        route=_ROUTE,
        status=200,
        duration_ns=perf_counter_ns() - start_ns,
        bytes=len(body),
        client_ip=client[0] if client else None,
        user_agent=user_agent,
        error=None,
        request_id=request_id,
        trace_id=None if parent is None else parent.trace_id,
        span_id=None if parent is None else parent.parent_id,
    )


def _started(jobs: Jobs | None) -> None:
    global _jobs
    _jobs = jobs
