"""Ceiling 4b: ``POST /v1/orders``, hotpath's jobs for it fused into one function around
``ceiling_order``'s transaction (bench/ceilings/order_place.py's ``place``, the same
statements).

The jobs, each through hotpath's code where that is the cheapest form there is: the edge's
(request id and ``traceparent``, access-log line, metrics, deadline, security headers), the
body limit (the declared length against ``HOTPATH_MAX_BODY_BYTES``, the body read whole), the
token (hotpath's ``Authenticator``), the write budget (``RouteClasses``, ``RateLimiter.admit``
or ``check`` and ``rate_limit_headers``), the ``Idempotency-Key``'s check, the body decoded
and validated into hotpath's ``NewOrderBody`` with msgspec and its request hash as hotpath
makes it; after the commit, ``ProductCache.invalidate_many`` for the order's products, the
one Redis call for all of them hotpath makes. Left out: layers, router, Starlette's request
and response.

``make bench`` serves it as ``ceiling_order_edge`` beside ``order_place`` and ``ceiling_order``
in the budget rounds; the report splits the order's ratio into these jobs and hotpath's
structure. It answers only what the bench sends (a valid order with a fresh key);
tests/bench checks its answer and effects against hotpath's.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from time import monotonic, perf_counter, perf_counter_ns
from typing import Any

import msgspec
from starlette.types import Receive, Scope, Send

from bench.ceilings.database import read_body
from bench.ceilings.edge_jobs import Jobs, lifespan
from bench.ceilings.order_place import _ceiling, place
from middleware.metrics import HttpMetrics
from middleware.request_id import _SANE_ID, REQUEST_ID_FIELD, _new_id, structlog_var
from middleware.security_headers import _API_CSP, _BASE_HEADERS, _NO_STORE
from middleware.trace_context import TRACEPARENT, parse_traceparent
from server.orders.handlers import _KEY
from server.orders.schemas import NewOrderBody

_ROUTE = "/v1/orders"
_MAX_USER_AGENT = 256
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_TAIL = (*_BASE_HEADERS, _HSTS, _API_CSP, _NO_STORE)
_JSON = (b"content-type", b"application/json")
_BODY = msgspec.json.Decoder(NewOrderBody)

_jobs: Jobs | None = None
_metrics = HttpMetrics(registry=None)
_request_id = structlog_var(REQUEST_ID_FIELD)
_deadline: ContextVar[float] = ContextVar("ceiling_deadline")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(_ceiling, receive, send, _started)
        return
    jobs = _jobs
    assert jobs is not None, "the lifespan has not run"
    start_ns = perf_counter_ns()
    start = perf_counter()
    incoming = user_agent = traceparent = authorization = key = length = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"idempotency-key":
            key = value
        elif name == b"content-length":
            length = value
        elif name == b"x-request-id":
            if incoming is None:
                incoming = value
        elif name == TRACEPARENT:
            traceparent = value
        elif name == b"user-agent":
            user_agent = value[:_MAX_USER_AGENT].decode("latin-1")
        elif name in (b"transfer-encoding", b"x-api-key"):
            raise NotImplementedError("the ceiling answers what make bench sends only")
    if authorization is None:  # make bench's readiness probe: orders come with a token
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    request_id = (
        incoming.decode("ascii") if incoming is not None and _SANE_ID(incoming) else _new_id()
    )
    scope["request_id"] = request_id
    _request_id.set(request_id)
    parent = None if traceparent is None else parse_traceparent(traceparent)
    if length is None or int(length) > jobs.settings.max_body_bytes:
        raise NotImplementedError("the ceiling takes bodies of a declared, allowed length")
    raw = await read_body(receive)
    _deadline.set(monotonic() + jobs.timeout)
    method = scope["method"]
    active = _metrics.active
    active[method] = active.get(method, 0) + 1
    # A principal at once: no API-key verifier is attached, so every token is a JWT.
    principal: Any = jobs.authenticate(authorization.decode("latin-1"), scope)
    scope["principal"] = principal
    limits = jobs.admitted(scope)
    if limits is None:
        limits = await jobs.decided(scope)  # no lease yet: one Redis call, as hotpath makes it
    idempotency_key = "" if key is None else key.decode("latin-1")
    if not _KEY.fullmatch(idempotency_key):
        raise NotImplementedError("the bench sends a valid Idempotency-Key")
    order = _BODY.decode(raw)
    request_hash = hashlib.sha256(msgspec.json.encode(order)).digest()
    quantities: dict[int, int] = {}
    for line in order.items:
        quantities[line.product_id] = quantities.get(line.product_id, 0) + line.quantity
    order_id, body, taken = await place(
        _ceiling, principal.user_id, idempotency_key, request_hash, quantities
    )
    await jobs.cache.invalidate_many([(p["id"], p["version"]) for p in taken])
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [
                _JSON,
                (b"content-length", str(len(body)).encode()),
                (b"location", f"/v1/orders/{order_id}".encode()),
                *limits,
                *_TAIL,
                (b"x-request-id", request_id.encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    active[method] -= 1
    _metrics.observe(method, _ROUTE, 201, perf_counter() - start)
    client = scope.get("client")
    jobs.lines.info(
        "http_request",
        method=method,
        path=scope["path"],
        route=_ROUTE,
        status=201,
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
