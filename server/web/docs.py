"""Routes serving the OpenAPI document and an offline Swagger UI page."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from server.web.conditional import not_modified

__all__ = ["ASSETS_DIR", "DOCS_CSP", "docs_routes"]

ASSETS_DIR = Path(__file__).parents[1] / "static" / "docs"

# Checked in headless Chromium against Swagger UI 5.35 (browse, try it out, authorize, models):
# no eval and no inline script (init.js boots it); React sets styles through the CSSOM, which
# CSP allows, but rendered Markdown tables carry style="text-align" attributes, hence
# style-src-attr; the stylesheet draws its icons from data: URIs.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

# Relative references resolve against /docs, so the page keeps working under a path prefix.
_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API documentation</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-spec-url="openapi.json"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/init.js"></script>
</body>
</html>
"""


async def root(request: Request) -> Response:
    """`/`: a browser (it asks for HTML) is sent to the docs page; any other client gets the
    two links as JSON. Relative references, so a path prefix in front of us is kept."""
    headers = {"Vary": "Accept", "Cache-Control": "no-cache"}
    if "text/html" in request.headers.get("accept", ""):
        return Response(status_code=302, headers={**headers, "Location": "docs"})
    return Response(_LINKS, media_type="application/json", headers=headers)


_LINKS = b'{"docs":"docs","openapi":"openapi.json"}'


def docs_routes(get_document: Callable[[], bytes]) -> list[BaseRoute]:
    """`/`, `/openapi.json`, `/docs` and `/docs/assets`; `get_document` returns the rendered
    JSON."""

    async def openapi_json(request: Request) -> Response:
        body = get_document()
        etag = _etag(body)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if not_modified(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def docs_page(request: Request) -> Response:
        headers = {"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"}
        return Response(_PAGE, media_type="text/html", headers=headers)

    return [
        Route("/", root, name="root", include_in_schema=False),
        Route("/openapi.json", openapi_json, name="openapi_json", include_in_schema=False),
        Route("/docs", docs_page, name="docs", include_in_schema=False),
        Mount("/docs/assets", StaticFiles(directory=ASSETS_DIR), name="docs_assets"),
    ]


@functools.lru_cache(maxsize=4)
def _etag(body: bytes) -> str:
    # The document is one cached bytes object, so the cache hits on identity: hashed once.
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
