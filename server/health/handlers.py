"""HTTP in/out for the probes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.health.schemas import Liveness, ReadinessView
from server.web.apidoc import api
from server.web.prepared import PreparedAnswer, prepared
from server.web.responses import JSONResponse, dumps
from server.web.state import container

_NO_STORE = {"cache-control": "no-store"}
# Every probe and every ping of the bench: the answer is built once (server/web/prepared.py).
_ALIVE = PreparedAnswer(dumps({"status": "ok"}), headers=_NO_STORE)


@api(summary="Liveness probe", tags=("health",), responses={200: Liveness})
@prepared(_ALIVE)
async def livez(request: Request) -> Response:
    return _ALIVE.response()


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
