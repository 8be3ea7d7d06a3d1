"""Ceiling 2b: ``GET /v1/products/{id}`` with a bearer token, hotpath's jobs for it fused into
one function: ``fixed_json_edge``'s (request id and ``traceparent``, access-log line, metrics,
deadline, body-limit check, security headers) plus the read's own, each through hotpath's
code where that is the cheapest form there is.

- The token: hotpath's ``Authenticator`` as ``create_app`` builds it (signature check with its
  verified-token cache, the denylist, the principal kept per token).
- The rate limit: hotpath's ``RouteClasses`` and ``RateLimiter.admit`` (a token from the
  local lease with the header bytes it keeps; ``check`` and ``rate_limit_headers`` when there
  is none; leases from the same Redis as hotpath's).
- The product: hotpath's ``ProductCache`` with the settings hotpath reads
  (``HOTPATH_PRODUCT_CACHE_SECONDS``, 0 for the uncached read), following invalidations on the
  same Redis; a warm read answers the cache's prepared bytes. A miss is the primary-key lookup
  on the cheapest pool, as ``ceiling_pk`` does it (``get_product``, orjson of the row).

What it leaves out is structure: no layers, router, Starlette request or response. ``make
bench`` serves it as ``ceiling_get_edge`` (beside ``product_get``) and, with the cache off, as
``ceiling_get_nocache_edge`` (beside ``product_get_nocache``); the report splits each read's
ratio into these jobs and hotpath's structure. It answers only what the bench sends (an id it
knows, a valid token, no body, no ``If-None-Match``); tests/bench checks it answers what
hotpath answers, byte for byte.
"""

from __future__ import annotations

from contextvars import ContextVar
from time import monotonic, perf_counter, perf_counter_ns

import orjson
from starlette.types import Receive, Scope, Send

from bench.ceilings.database import Ceiling
from bench.ceilings.edge_jobs import Jobs, lifespan
from bench.ceilings.products import OPTIONS, product
from middleware.metrics import HttpMetrics
from middleware.request_id import _SANE_ID, REQUEST_ID_FIELD, _new_id, structlog_var
from middleware.security_headers import _API_CSP, _BASE_HEADERS, _NO_STORE
from middleware.trace_context import TRACEPARENT, parse_traceparent
from server.catalog.cache import CachedProduct
from server.web.conditional import etag

_ROUTE = "/v1/products/{product_id}"
_PREFIX = "/v1/products/"
_MAX_USER_AGENT = 256
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
# After the rate-limit headers, as hotpath's security layer appends them (credentials sent).
_TAIL = (*_BASE_HEADERS, _HSTS, _API_CSP, _NO_STORE)
_JSON = (b"content-type", b"application/json")


_jobs: Jobs | None = None
_ceiling = Ceiling()
_QUERY = _ceiling.queries.sql("get_product")
_metrics = HttpMetrics(registry=None)
_request_id = structlog_var(REQUEST_ID_FIELD)
_deadline: ContextVar[float] = ContextVar("ceiling_deadline")


async def _load_row(product_id: int) -> CachedProduct | None:
    async with _ceiling.connection() as conn:
        row = await conn.fetchrow(_QUERY, product_id)
    if row is None:
        return None
    body = orjson.dumps(product(row), option=OPTIONS)
    return CachedProduct(row["version"], etag("p", product_id, row["version"]), body)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(_ceiling, receive, send, _started)
        return
    jobs = _jobs
    assert jobs is not None, "the lifespan has not run"
    start_ns = perf_counter_ns()
    start = perf_counter()
    incoming = user_agent = traceparent = authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"x-request-id":
            if incoming is None:
                incoming = value
        elif name == TRACEPARENT:
            traceparent = value
        elif name == b"user-agent":
            user_agent = value[:_MAX_USER_AGENT].decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding", b"if-none-match", b"x-api-key"):
            raise NotImplementedError("the ceiling answers what make bench sends only")
    if authorization is None:  # make bench's readiness probe: the ceiling reads with a token
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
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
    # A principal at once: no API-key verifier is attached, so every token is a JWT.
    scope["principal"] = jobs.authenticate(authorization.decode("latin-1"), scope)
    limits = jobs.admitted(scope)
    if limits is None:
        limits = await jobs.decided(scope)  # no lease yet: one Redis call, as hotpath makes it
    path: str = scope["path"]
    tail = path[len(_PREFIX) :]
    if not path.startswith(_PREFIX) or not tail.isdigit():
        raise NotImplementedError("the ceiling answers GET /v1/products/{id} only")
    product_id = int(tail)
    cached = await jobs.cache.get(product_id, lambda: _load_row(product_id))
    if cached is None:
        raise NotImplementedError("the ceiling answers products that exist only")
    body = cached.body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                _JSON,
                (b"content-length", str(len(body)).encode()),
                (b"etag", cached.etag.encode()),
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
