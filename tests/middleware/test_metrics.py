from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from middleware import HttpMetrics, MetricsMiddleware

ROOT = Path(__file__).resolve().parents[2]
DURATION_COUNT = "http_server_request_duration_seconds_count"
ACTIVE = "http_server_active_requests"


def labels(method: str, route: str, status: int) -> dict[str, str]:
    return {
        "http_request_method": method,
        "http_route": route,
        "http_response_status_code": str(status),
    }


def setup() -> tuple[CollectorRegistry, httpx.AsyncClient]:
    registry = CollectorRegistry()

    async def get_item(request: Request) -> Response:
        in_flight = registry.get_sample_value(ACTIVE, {"http_request_method": "GET"})
        return JSONResponse({"id": request.path_params["id"], "in_flight": in_flight})

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def purge(request: Request) -> Response:
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/items/{id:int}", get_item),
            Route("/boom", boom),
            Route("/purge", purge, methods=["PURGE"]),
            Mount("/v1", routes=[Route("/products/{id}", get_item)]),
        ]
    )
    metrics = HttpMetrics(registry=registry)
    transport = httpx.ASGITransport(
        app=MetricsMiddleware(app, metrics=metrics), raise_app_exceptions=False
    )
    return registry, httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_route_template_label_never_the_raw_path() -> None:
    registry, http = setup()
    async with http:
        for item in (1, 2, 3):
            await http.get(f"/items/{item}")
    assert registry.get_sample_value(DURATION_COUNT, labels("GET", "/items/{id}", 200)) == 3
    assert registry.get_sample_value(DURATION_COUNT, labels("GET", "/items/1", 200)) is None
    bucket = registry.get_sample_value(
        "http_server_request_duration_seconds_bucket",
        {**labels("GET", "/items/{id}", 200), "le": "10.0"},
    )
    assert bucket == 3


async def test_mounted_routes_get_the_full_template() -> None:
    registry, http = setup()
    async with http:
        await http.get("/v1/products/abc")
        await http.get("/v1/nothing-here")
    assert registry.get_sample_value(DURATION_COUNT, labels("GET", "/v1/products/{id}", 200)) == 1
    assert registry.get_sample_value(DURATION_COUNT, labels("GET", "unmatched", 404)) == 1


async def test_router_404s_share_the_unmatched_label() -> None:
    registry, http = setup()
    async with http:
        for path in ("/a", "/b/c", "/items/not-an-int"):
            assert (await http.get(path)).status_code == 404
    assert registry.get_sample_value(DURATION_COUNT, labels("GET", "unmatched", 404)) == 3


async def test_unknown_methods_are_other_and_405_keeps_the_route() -> None:
    registry, http = setup()
    async with http:
        await http.request("PURGE", "/purge")
        await http.request("BREW", "/items/1")
    assert registry.get_sample_value(DURATION_COUNT, labels("_OTHER", "/purge", 204)) == 1
    assert registry.get_sample_value(DURATION_COUNT, labels("_OTHER", "/items/{id}", 405)) == 1


async def test_active_requests_is_one_inside_and_zero_after() -> None:
    registry, http = setup()
    async with http:
        response = await http.get("/items/5")
        await http.get("/boom")
    assert response.json()["in_flight"] == 1
    assert registry.get_sample_value(ACTIVE, {"http_request_method": "GET"}) == 0


async def test_crash_is_counted_as_500() -> None:
    registry, http = setup()
    async with http:
        await http.get("/boom")
    assert registry.get_sample_value(DURATION_COUNT, labels("GET", "/boom", 500)) == 1


async def test_crash_before_any_response_is_counted_and_propagates() -> None:
    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("nope")

    registry = CollectorRegistry()
    app = MetricsMiddleware(crashing, metrics=HttpMetrics(registry=registry))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        with pytest.raises(KeyError):
            await http.post("/x")
    assert registry.get_sample_value(DURATION_COUNT, labels("POST", "unmatched", 500)) == 1
    assert registry.get_sample_value(ACTIVE, {"http_request_method": "POST"}) == 0


def test_rejects_anything_but_http_metrics() -> None:
    with pytest.raises(TypeError):
        MetricsMiddleware(Starlette(), metrics=object())  # type: ignore[arg-type]


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from middleware import HttpMetrics, MetricsMiddleware

    async def ok(request):
        return PlainTextResponse("ok")

    async def main(count):
        metrics = HttpMetrics(registry=None, multiprocess=True)
        app = MetricsMiddleware(Starlette(routes=[Route("/ok", ok)]), metrics=metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for _ in range(count):
                await http.get("/ok")
            metrics.flush()
            await http.get("/ok")
            metrics.flush()
            metrics.flush()  # nothing new: must not count twice

    asyncio.run(main(int(sys.argv[1])))
    """
)


@pytest.mark.slow
def test_multiprocess_mode_sums_the_workers(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for count in (3, 4):
        subprocess.run(
            [sys.executable, "-c", WORKER, str(count)], env=env, cwd=ROOT, check=True, timeout=60
        )
    histogram_files = sorted(path.name for path in tmp_path.glob("histogram_*.db"))
    assert len(histogram_files) == 2, histogram_files
    assert sorted(path.name for path in tmp_path.glob("gauge_livesum_*.db")) != []

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    assert registry.get_sample_value(DURATION_COUNT, labels("GET", "/ok", 200)) == 9
    bucket = {**labels("GET", "/ok", 200), "le": "+Inf"}
    assert registry.get_sample_value(DURATION_COUNT.replace("count", "bucket"), bucket) == 9
    assert registry.get_sample_value(ACTIVE, {"http_request_method": "GET"}) == 0


def test_shed_requests_are_counted() -> None:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry=registry)
    assert registry.get_sample_value("hotpath_http_shed_requests_total") == 0
    metrics.count_shed()
    metrics.count_shed()
    assert registry.get_sample_value("hotpath_http_shed_requests_total") == 2
