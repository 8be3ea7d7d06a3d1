"""OpenAPI 3.1 document built from the route table and the handlers' `@api` declarations."""

from __future__ import annotations

import copy
import functools
import http
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import msgspec
from starlette.convertors import (
    Convertor,
)
from starlette.routing import BaseRoute, Host, Mount, Route

from server.ratelimit.classes import exempt as rate_limit_exempt
from server.web.apidoc import DOCUMENTED, EndpointDoc, endpoint_doc
from server.web.openapi_params import (
    BODY_PROBLEMS,
    ETAG_HEADER,
    HEADER_SCHEMAS,
    NUL_FREE,
    QUERY_PARAMETERS,
    path_schema,
    request_headers,
)

__all__ = ["PROBLEM_SCHEMA", "build_openapi"]

_REF = "#/components/schemas/{name}"
_PROBLEM_REF = {"$ref": _REF.format(name="Problem")}
_PROBLEM_MEDIA_TYPE = "application/problem+json"
# OpenAPI 3.1 knows no QUERY method; HEAD is implied by GET.
_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE")

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem details object.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string", "description": "JSON Pointer (RFC 6901)"},
                    "detail": {"type": "string"},
                },
                "required": ["pointer", "detail"],
            },
        },
    },
    "required": ["type", "title", "status"],
}

_SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from /v1/auth/login or /v1/auth/refresh; routes that "
        "take API keys also accept an hp_ key here.",
    },
    "apiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An hp_ API key from /v1/api-keys (its scopes limit what it may do).",
    },
}
_SESSION_ONLY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
_SESSION_OR_KEY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyAuth": []}]


def build_openapi(
    routes: Sequence[BaseRoute], *, title: str, version: str, description: str = ""
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes`; raises ValueError on an undocumented route."""
    endpoints = sorted(_endpoints(routes, "", {}), key=lambda e: (e.path, _METHODS.index(e.method)))
    types = _collect_types(e.doc for e in endpoints)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    _apply_documented([schemas, components])
    schema_of = dict(zip(types, schemas, strict=True))
    if "Problem" in components:
        raise ValueError("a schema named 'Problem' clashes with the problem+json component")

    paths: dict[str, dict[str, Any]] = {}
    op_ids: set[str] = set()
    for e in endpoints:
        op = _operation(e, schema_of, components)
        if op["operationId"] in op_ids:
            raise ValueError(f"duplicate operationId {op['operationId']!r} at {e.path}")
        op_ids.add(op["operationId"])
        ops = paths.setdefault(e.path, {})
        if e.method.lower() in ops:
            raise ValueError(f"{e.method} {e.path} is routed twice")
        ops[e.method.lower()] = op

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {**components, "Problem": PROBLEM_SCHEMA},
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }
    if description:
        document["info"]["description"] = description
    _drop_unreferenced(document, {e.doc.query for e in endpoints} - {None}, schema_of)
    document["components"]["schemas"] = dict(sorted(document["components"]["schemas"].items()))
    # The tree holds module constants (PROBLEM_SCHEMA): a caller editing it must not change them.
    document = copy.deepcopy(document)
    _refuse_nul(document)
    return document


class _Endpoint(NamedTuple):
    path: str
    method: str
    convertors: dict[str, Convertor[Any]]
    name: str
    doc: EndpointDoc
    shared: bool  # the handler serves several methods, so its name alone is not unique


def _endpoints(
    routes: Sequence[BaseRoute], prefix: str, convertors: dict[str, Convertor[Any]]
) -> Iterator[_Endpoint]:
    for route in routes:
        if isinstance(route, Mount):
            # Mount has no include_in_schema; an opaque app (StaticFiles) has no routes.
            inner = {**convertors, **route.param_convertors}
            inner.pop("path", None)
            yield from _endpoints(
                route.routes, prefix + route.path_format[: -len("/{path}")], inner
            )
        elif isinstance(route, Host):
            yield from _endpoints(route.routes, prefix, convertors)
        elif isinstance(route, Route) and route.include_in_schema:
            yield from _route_endpoints(route, prefix, convertors)


def _route_endpoints(
    route: Route, prefix: str, convertors: dict[str, Convertor[Any]]
) -> Iterator[_Endpoint]:
    path = prefix + route.path_format
    handler: Any = route.endpoint
    while isinstance(handler, functools.partial):
        handler = handler.func
    doc = endpoint_doc(handler)
    if doc is None:
        raise ValueError(f"route {path} has no @api(...) documentation")
    if route.methods is None:
        raise ValueError(f"route {path} has no methods: only function endpoints are supported")
    methods = sorted(route.methods - {"HEAD"})
    unknown = set(methods) - set(_METHODS)
    if unknown:
        raise ValueError(f"route {path}: OpenAPI 3.1 cannot describe {sorted(unknown)}")
    name = getattr(handler, "__name__", route.name)
    params = {**convertors, **route.param_convertors}
    for method in methods:
        yield _Endpoint(path, method, params, name, doc, len(methods) > 1)


def _collect_types(docs: Iterator[EndpointDoc]) -> list[Any]:
    types: dict[Any, None] = {}  # ordered set: the same type appears once
    for doc in docs:
        for t in (doc.body, doc.query, *doc.responses.values(), *doc.problems.values()):
            if t is not None:
                types[t] = None
    return list(types)


_RATE_LIMIT_HEADERS = {
    name: {"description": description, "schema": {"type": "string"}}
    for name, description in (
        ("Retry-After", "Seconds to wait before trying again (rounded up)."),
        ("RateLimit", 'Remaining requests and seconds to a full budget: "read";r=0;t=20'),
        ("RateLimit-Policy", 'The budget: "read";q=1200;w=60 (also on every allowed answer)'),
    )
}


_LOCATION_HEADER = {
    "description": "The path of the resource this request created.",
    "schema": {"type": "string", "format": "uri-reference"},
}


def _operation(
    e: _Endpoint, schema_of: dict[Any, dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    doc = e.doc
    op_id = doc.operation_id or (f"{e.name}_{e.method.lower()}" if e.shared else e.name)
    op: dict[str, Any] = {"operationId": op_id, "summary": doc.summary}
    if doc.description:
        op["description"] = doc.description
    if doc.tags:
        op["tags"] = list(doc.tags)
    params = [
        {"name": key, "in": "path", "required": True, "schema": path_schema(key, conv)}
        for key, conv in e.convertors.items()
    ]
    if doc.query is not None:
        params.extend(_query_params(doc.query, schema_of[doc.query], components))
    headers = request_headers(doc)
    params.extend(
        {
            "name": h,
            "in": "header",
            "required": req,
            "description": d,
            "schema": HEADER_SCHEMAS.get(h.lower(), {"type": "string"}),
        }
        for h, d, req in headers
    )
    if params:
        op["parameters"] = params
    if doc.body is not None:
        content = {"application/json": {"schema": schema_of[doc.body]}}
        op["requestBody"] = {"required": doc.body_required, "content": content}

    responses: dict[int, dict[str, Any]] = {}
    for status, body in doc.responses.items():
        responses[status] = {"description": _phrase(status)}
        if body is not None:
            responses[status]["content"] = {doc.response_media_type: {"schema": schema_of[body]}}
    problems = {*doc.errors, 500} | ({401} if doc.auth else set())
    if doc.body is not None:
        problems |= BODY_PROBLEMS
    edge = not rate_limit_exempt(e.path)
    if edge:
        # Rate limits, the in-flight cap and an unreachable database reach every such route.
        problems |= {429, 503}
    for status in problems - set(responses):
        schema: dict[str, Any] = _PROBLEM_REF
        if status in doc.problems:
            schema = {"allOf": [_PROBLEM_REF, schema_of[doc.problems[status]]]}
        content = {_PROBLEM_MEDIA_TYPE: {"schema": schema}}
        responses[status] = {"description": _phrase(status), "content": content}
    if edge:
        responses[429]["headers"] = _RATE_LIMIT_HEADERS
        responses[503]["headers"] = {"Retry-After": _RATE_LIMIT_HEADERS["Retry-After"]}
    if {h.lower() for h, _, _ in headers} & {"if-match", "if-none-match"}:
        for status, response in responses.items():
            if status == 304 or (200 <= status < 300 and "content" in response):
                response["headers"] = {"ETag": ETAG_HEADER}
    if 201 in responses:
        # Every 201 names what it created (RFC 9110 15.3.2).
        responses[201].setdefault("headers", {})["Location"] = _LOCATION_HEADER
    op["responses"] = {str(s): responses[s] for s in sorted(responses)}
    if doc.auth:
        op["security"] = _SESSION_OR_KEY if doc.api_keys else _SESSION_ONLY
    return op


def _query_params(
    query: Any, ref: dict[str, Any], components: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    schema = components.get(ref.get("$ref", "").rpartition("/")[2])
    if schema is None or schema.get("type") != "object":
        raise ValueError(f"query type {query!r} must be a msgspec Struct")
    required = set(schema.get("required", ()))
    for key, prop in schema["properties"].items():
        prop = dict(prop)
        param: dict[str, Any] = {"name": key, "in": "query", "required": key in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        param["schema"] = prop
        param.update(copy.deepcopy(QUERY_PARAMETERS.get(key, {})))
        yield param


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"


def _drop_unreferenced(
    document: dict[str, Any], queries: set[Any], schema_of: dict[Any, dict[str, Any]]
) -> None:
    # Query structs become parameters; their components stay only if something else refers
    # to them, so the schema list shows bodies and responses, not query containers.
    schemas = document["components"]["schemas"]
    for query in queries:
        name = schema_of[query].get("$ref", "").rpartition("/")[2]
        definition = schemas.pop(name, None)
        if definition is not None and _REF.format(name=name) in _refs(document):
            schemas[name] = definition


def _apply_documented(node: Any) -> None:
    """Replace schema keys by those a `DOCUMENTED` mapping gives, in place."""
    if isinstance(node, dict):
        override = node.pop(DOCUMENTED, None)
        for value in node.values():
            _apply_documented(value)
        if override is not None:
            if not isinstance(override, dict):
                raise ValueError(f"{DOCUMENTED} must map schema keys to values: {override!r}")
            node.update(override)
    elif isinstance(node, list):
        for item in node:
            _apply_documented(item)


def _refuse_nul(node: Any) -> None:
    """Give every string schema the NUL_FREE pattern, beside a pattern of its own if it has
    one (an enum names its values already)."""
    if isinstance(node, dict):
        kind = node.get("type")
        if (kind == "string" or (isinstance(kind, list) and "string" in kind)) and not (
            {"enum", "const"} & node.keys()
        ):
            if "pattern" not in node:
                node["pattern"] = NUL_FREE
            elif node["pattern"] != NUL_FREE:
                node.setdefault("allOf", []).append({"pattern": NUL_FREE})
        for value in node.values():
            _refuse_nul(value)
    elif isinstance(node, list):
        for item in node:
            _refuse_nul(item)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)
