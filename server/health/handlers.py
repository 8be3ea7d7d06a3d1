"""HTTP in/out for the probes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.health.schemas import Liveness, ReadinessView
from server.web.apidoc import api
from server.web.asgi_endpoint import asgi_endpoint, json_start
from server.web.responses import JSONResponse, dumps
from server.web.state import container

_NO_STORE = {"cache-control": "no-store"}
# Every probe and every ping of the bench: the answer's bytes and headers are built once, the
# headers as json_start sends them (content-type, content-length, cache-control).
_ALIVE = dumps({"status": "ok"})
_ALIVE_HEADERS = tuple(json_start(_ALIVE, ((b"cache-control", b"no-store"),))["headers"])


@api(summary="Liveness probe", tags=("health",), responses={200: Liveness})
@asgi_endpoint
async def livez(scope: Scope, receive: Receive, send: Send) -> None:
    # Raw ASGI (server/web/asgi_endpoint.py): the router calls this function itself. Fresh
    # messages and a fresh header list each time: the layers above write into them. Written
    # out rather than built by json_start and body_message: two calls fewer.
    await send({"type": "http.response.start", "status": 200, "headers": list(_ALIVE_HEADERS)})
    await send({"type": "http.response.body", "body": _ALIVE})


@api(
    summary="Readiness probe",
    description="PostgreSQL reachable, migrations current, Redis when configured; "
    "503 while the process drains after SIGTERM.",
    tags=("health",),
    responses={200: ReadinessView, 503: ReadinessView},
)
async def readyz(request: Request) -> Response:
    readiness = await container(request).health.readiness()
    body = {"status": "ready" if readiness.ready else "not_ready", "checks": readiness.checks}
    if readiness.ready:
        return JSONResponse(body, headers=_NO_STORE)
    return JSONResponse(body, status_code=503, headers={**_NO_STORE, "retry-after": "1"})
