from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
import orjson
import pytest
from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from server.apidoc import EndpointDoc, api, endpoint_doc
from server.openapi import build_openapi

PROBLEM = {"$ref": "#/components/schemas/Problem"}


class Thing(msgspec.Struct):
    id: int
    name: str


class NewThing(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class ThingQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100, description="Page size")] = 20
    cursor: str | None = None


class User(msgspec.Struct):
    email: str


@api(summary="List things", tags=("things",), query=ThingQuery, responses={200: list[Thing]})
async def list_things(request: Request) -> Response:
    return Response()


@api(
    summary="Create a thing",
    tags=("things",),
    body=NewThing,
    responses={201: Thing},
    errors=(409, 422),
    auth=True,
    request_headers=(("Idempotency-Key", "Replays the first response", False),),
)
async def create_thing(request: Request) -> Response:
    return Response()


@api(summary="Get a thing", responses={200: Thing}, errors=(404,))
async def get_thing(request: Request) -> Response:
    return Response()


@api(summary="Remove a label", responses={204: None}, auth=True)
async def label(request: Request) -> Response:
    return Response()


@api(summary="Metrics", responses={200: str}, response_media_type="text/plain; version=0.0.4")
async def metrics(request: Request) -> Response:
    return Response()


@api(summary="Get a user", responses={200: User}, operation_id="adminGetUser")
async def get_user(request: Request) -> Response:
    return Response()


@api(summary="List members", responses={200: list[User]})
async def members(request: Request) -> Response:
    return Response()


async def undocumented(request: Request) -> Response:
    return Response()


def fresh_handler() -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return Response()

    return handler


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise NotImplementedError


ROUTES: list[BaseRoute] = [
    Route("/v1/things/{thing_id:int}", get_thing),
    Route("/v1/things", list_things, methods=["GET"]),
    Route("/v1/things", create_thing, methods=["POST"]),
    Route("/v1/things/{thing_id:int}/labels/{name}", label, methods=["PUT", "DELETE"]),
    Route("/metrics", metrics),
    Mount("/v1/admin", routes=[Route("/users/{user_id:uuid}", get_user)]),
    Mount("/v1/orgs/{org_id:int}", routes=[Mount("/teams/{team}", routes=[Route("/", members)])]),
    Route("/internal", undocumented, include_in_schema=False),
    Mount("/raw", app=raw_app),
]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_openapi(ROUTES, title="test", version="1.2.3", description="Test API")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_document_is_valid_openapi_31(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {"title": "test", "version": "1.2.3", "description": "Test API"}


def test_every_included_route_and_method_is_present(doc: dict[str, Any]) -> None:
    ops = {path: sorted(methods) for path, methods in doc["paths"].items()}
    assert ops == {
        "/metrics": ["get"],
        "/v1/admin/users/{user_id}": ["get"],
        "/v1/orgs/{org_id}/teams/{team}/": ["get"],
        "/v1/things": ["get", "post"],
        "/v1/things/{thing_id}": ["get"],
        "/v1/things/{thing_id}/labels/{name}": ["delete", "put"],
    }
    assert list(doc["paths"]) == sorted(doc["paths"])


def test_path_parameters_are_typed(doc: dict[str, Any]) -> None:
    params = doc["paths"]["/v1/things/{thing_id}/labels/{name}"]["put"]["parameters"]
    assert params == [
        {
            "name": "thing_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        },
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    (user_id,) = doc["paths"]["/v1/admin/users/{user_id}"]["get"]["parameters"]
    assert user_id["schema"] == {"type": "string", "format": "uuid"}
    nested = doc["paths"]["/v1/orgs/{org_id}/teams/{team}/"]["get"]["parameters"]
    assert [(p["name"], p["schema"]["type"]) for p in nested] == [
        ("org_id", "integer"),
        ("team", "string"),
    ]


def test_query_struct_becomes_query_parameters(doc: dict[str, Any]) -> None:
    limit, cursor = doc["paths"]["/v1/things"]["get"]["parameters"]
    assert limit["name"] == "limit"
    assert limit["in"] == "query"
    assert limit["required"] is False
    assert limit["description"] == "Page size"
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert cursor["name"] == "cursor"
    assert cursor["required"] is False
    assert "ThingQuery" not in doc["components"]["schemas"]


def test_request_body_and_headers(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/v1/things"]["post"]
    body = op["requestBody"]
    assert body["required"] is True
    schema = resolve(doc, body["content"]["application/json"]["schema"]["$ref"])
    assert schema["properties"]["name"] == {"type": "string", "minLength": 1, "maxLength": 100}
    assert op["parameters"] == [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Replays the first response",
            "schema": {"type": "string"},
        }
    ]
    assert "requestBody" not in doc["paths"]["/v1/things"]["get"]


def test_responses_and_problem_errors(doc: dict[str, Any]) -> None:
    listed = doc["paths"]["/v1/things"]["get"]["responses"]
    # Every route but probes and docs is limited, capped and needs the database.
    assert list(listed) == ["200", "429", "500", "503"]
    assert set(listed["429"]["headers"]) == {"Retry-After", "RateLimit", "RateLimit-Policy"}
    assert set(listed["503"]["headers"]) == {"Retry-After"}
    assert listed["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Thing"},
    }
    created = doc["paths"]["/v1/things"]["post"]["responses"]
    assert list(created) == ["201", "401", "409", "422", "429", "500", "503"]
    for status in ("401", "409", "422", "500"):
        assert created[status]["content"] == {"application/problem+json": {"schema": PROBLEM}}
    assert created["409"]["description"] == "Conflict"
    deleted = doc["paths"]["/v1/things/{thing_id}/labels/{name}"]["delete"]["responses"]
    assert deleted["204"] == {"description": "No Content"}
    text = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert text == {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}
    problem = doc["components"]["schemas"]["Problem"]
    fields = {"type", "title", "status", "detail", "instance", "request_id", "errors"}
    assert set(problem["properties"]) == fields


def test_security_follows_auth(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    bearer = schemes["bearerAuth"]
    assert (bearer["type"], bearer["scheme"], bearer["bearerFormat"]) == ("http", "bearer", "JWT")
    key = schemes["apiKeyAuth"]
    assert (key["type"], key["in"], key["name"]) == ("apiKey", "header", "X-API-Key")
    # Either scheme satisfies the requirement (a list of alternatives).
    assert doc["paths"]["/v1/things"]["post"]["security"] == [
        {"bearerAuth": []},
        {"apiKeyAuth": []},
    ]
    assert "security" not in doc["paths"]["/v1/things"]["get"]
    assert "security" not in doc


def test_operation_ids_are_unique_and_derived(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert doc["paths"]["/v1/things"]["get"]["operationId"] == "list_things"
    labels = doc["paths"]["/v1/things/{thing_id}/labels/{name}"]
    assert labels["put"]["operationId"] == "label_put"
    assert labels["delete"]["operationId"] == "label_delete"
    assert doc["paths"]["/v1/admin/users/{user_id}"]["get"]["operationId"] == "adminGetUser"


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    found = refs(doc)
    assert found
    for ref in found:
        assert isinstance(resolve(doc, ref), dict)


def test_output_is_deterministic() -> None:
    first = build_openapi(ROUTES, title="t", version="1")
    second = build_openapi(list(reversed(ROUTES)), title="t", version="1")
    assert orjson.dumps(first) == orjson.dumps(second)


def test_undocumented_route_is_an_error() -> None:
    routes = [Route("/v1/things", list_things), Route("/v1/secret/{id:int}", undocumented)]
    with pytest.raises(ValueError, match=r"/v1/secret/\{id\}"):
        build_openapi(routes, title="t", version="1")


def test_excluded_routes_are_absent(doc: dict[str, Any]) -> None:
    assert "/internal" not in doc["paths"]
    assert not [path for path in doc["paths"] if path.startswith("/raw")]


def test_same_method_routed_twice_is_an_error() -> None:
    routes = [Route("/a", list_things), Route("/a", get_thing)]
    with pytest.raises(ValueError, match="routed twice"):
        build_openapi(routes, title="t", version="1")


def test_schema_named_problem_is_rejected() -> None:
    class Problem(msgspec.Struct):
        x: int

    handler = api(summary="x", responses={200: Problem})(fresh_handler())
    with pytest.raises(ValueError, match="Problem"):
        build_openapi([Route("/p", handler)], title="t", version="1")


def test_api_returns_the_same_function() -> None:
    handler = fresh_handler()
    assert api(summary="x", responses={200: None})(handler) is handler
    doc = endpoint_doc(handler)
    assert isinstance(doc, EndpointDoc)
    assert doc.summary == "x"
    assert endpoint_doc(undocumented) is None


@pytest.mark.parametrize(
    ("responses", "errors"),
    [({}, ()), ({204: Thing}, ()), ({200: Thing}, (200,)), ({404: None}, (404,)), ({99: None}, ())],
)
def test_bad_declarations_fail_at_decoration(
    responses: dict[int, type | None], errors: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match="api"):
        api(summary="x", responses=responses, errors=errors)
