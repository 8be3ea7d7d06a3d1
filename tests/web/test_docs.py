from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from middleware.compression import CompressionMiddleware
from server.web.docs import ASSETS_DIR, DOCS_CSP, docs_routes

DOCUMENT = b'{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{}}'
CONTENT_TYPES = {
    ".js": {"text/javascript", "application/javascript"},
    ".css": {"text/css"},
    ".png": {"image/png"},
}


class References(HTMLParser):
    """Collects every URL the page loads, and the text of any inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.spec_urls: list[str] = []
        self.inline_script = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        assert not any(key.startswith("on") for key in values), f"inline handler on <{tag}>"
        assert "style" not in values, f"inline style on <{tag}>"
        for key in ("src", "href"):
            if key in values:
                self.urls.append(values[key])
        if "data-spec-url" in values:
            self.spec_urls.append(values["data-spec-url"])
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script += data.strip()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=docs_routes(lambda: DOCUMENT))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_openapi_json_is_served_with_a_strong_etag(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.content == DOCUMENT
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    etag = response.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert (await client.get("/openapi.json")).headers["etag"] == etag


@pytest.mark.parametrize("template", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
async def test_if_none_match_answers_304(client: httpx.AsyncClient, template: str) -> None:
    etag = (await client.get("/openapi.json")).headers["etag"]
    response = await client.get(
        "/openapi.json", headers={"If-None-Match": template.format(etag=etag)}
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


async def test_stale_etag_gets_the_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json", headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.content == DOCUMENT


async def test_a_compressed_etag_sent_back_answers_304() -> None:
    # The compression middleware turns "tag" into "tag-gzip"; the client sends that back.
    document = DOCUMENT[:-1] + b',"x-pad":"' + b"a" * 4096 + b'"}'
    app = CompressionMiddleware(Starlette(routes=docs_routes(lambda: document)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
        etag = first.headers["etag"]
        assert first.headers["content-encoding"] == "gzip"
        assert etag.endswith('-gzip"')
        response = await client.get(
            "/openapi.json", headers={"Accept-Encoding": "gzip", "If-None-Match": etag}
        )
    assert response.status_code == 304
    assert response.content == b""


async def test_etag_follows_the_document() -> None:
    documents = [DOCUMENT, DOCUMENT.replace(b'"1"', b'"2"')]
    app = Starlette(routes=docs_routes(lambda: documents[0]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = (await client.get("/openapi.json")).headers["etag"]
        documents.pop(0)
        response = await client.get("/openapi.json", headers={"If-None-Match": first})
    assert response.status_code == 200
    assert response.headers["etag"] != first


async def test_docs_page_has_a_strict_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert csp == DOCS_CSP
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in directives["style-src"]


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_docs_page_loads_only_local_assets(prefix: str) -> None:
    app = Starlette(routes=[Mount(prefix, routes=docs_routes(lambda: DOCUMENT))])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page_url = f"http://test{prefix}/docs"
        page = References()
        page.feed((await client.get(page_url)).text)
        assert page.inline_script == ""
        assert len(page.urls) >= 3
        for ref in page.urls:
            url = urljoin(page_url, ref)
            assert urlsplit(url).netloc == "test", ref
            assert urlsplit(url).path.startswith(f"{prefix}/docs/assets/"), ref
            response = await client.get(url)
            assert response.status_code == 200, url
            suffix = "." + url.rsplit(".", 1)[1]
            media_type = response.headers["content-type"].split(";")[0]
            assert media_type in CONTENT_TYPES[suffix], url
        (spec_url,) = page.spec_urls
        spec = await client.get(urljoin(page_url, spec_url))
    assert spec.content == DOCUMENT


async def test_boot_script_and_licences_are_vendored(client: httpx.AsyncClient) -> None:
    init = await client.get("/docs/assets/init.js")
    assert init.status_code == 200
    assert "SwaggerUIBundle(" in init.text
    for name in ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt", "README.md"):
        assert (ASSETS_DIR / name).is_file(), name


async def test_the_root_sends_a_browser_to_the_docs(client: httpx.AsyncClient) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = await client.get("/", headers={"accept": browser})
    assert response.status_code == 302
    assert urljoin("http://test/", response.headers["location"]) == "http://test/docs"
    assert response.headers["vary"] == "Accept"
    followed = await client.get("/", headers={"accept": browser}, follow_redirects=True)
    assert followed.status_code == 200
    assert followed.headers["content-type"].startswith("text/html")


async def test_the_root_gives_other_clients_the_links(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={"accept": "application/json"})
    assert response.status_code == 200
    links = response.json()
    assert urljoin("http://test/", links["docs"]) == "http://test/docs"
    assert (await client.get(urljoin("http://test/", links["openapi"]))).content == DOCUMENT
