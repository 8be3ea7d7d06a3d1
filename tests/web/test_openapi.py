from __future__ import annotations

import datetime as dt
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import httpx
import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from server.auth import password_policy
from server.auth.permissions import KNOWN_PERMISSIONS
from server.orders import handlers as order_handlers
from server.routes import build_routes
from server.web.apidoc import DOCUMENTED, EndpointDoc, api, endpoint_doc
from server.web.conditional import etag
from server.web.openapi import build_openapi
from server.web.openapi_params import CURSOR_PATTERN, NUL_FREE
from server.web.pagination import CursorCodec
from tests.fixtures.catalog import Catalog, unique_category, unique_sku
from tests.fixtures.support import assert_problem

PROBLEM = {"$ref": "#/components/schemas/Problem"}
NUL = {"pattern": NUL_FREE}  # what every string schema carries (beside a pattern of its own)


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
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string", **NUL}},
    ]
    (user_id,) = doc["paths"]["/v1/admin/users/{user_id}"]["get"]["parameters"]
    assert user_id["schema"] == {"type": "string", "format": "uuid", **NUL}
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
    assert schema["properties"]["name"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 100,
        **NUL,
    }
    assert op["parameters"] == [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Replays the first response",
            # The server's rule for the key, whoever declares the header.
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[\\x21-\\x7e]{1,255}$",
                "allOf": [NUL],
            },
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
    assert list(created) == ["201", "401", "408", "409", "413", "415", "422", "429", "500", "503"]
    for status in ("401", "409", "413", "415", "422", "500"):
        assert created[status]["content"] == {"application/problem+json": {"schema": PROBLEM}}
    assert created["409"]["description"] == "Conflict"
    deleted = doc["paths"]["/v1/things/{thing_id}/labels/{name}"]["delete"]["responses"]
    assert deleted["204"] == {"description": "No Content"}
    text = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert text == {"text/plain; version=0.0.4": {"schema": {"type": "string", **NUL}}}
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


def test_a_request_body_can_be_too_large_or_of_another_media_type(doc: dict[str, Any]) -> None:
    for ops in doc["paths"].values():
        for op in ops.values():
            body_problems = {"413", "415"} & set(op["responses"])
            assert body_problems == ({"413", "415"} if "requestBody" in op else set())
    responses = doc["paths"]["/v1/things"]["post"]["responses"]
    assert responses["413"]["description"] == "Request Entity Too Large"
    assert responses["415"]["content"] == {"application/problem+json": {"schema": PROBLEM}}


def conditional_doc(**declared: Any) -> dict[str, Any]:
    handler = api(summary="x", **declared)(fresh_handler())
    document = build_openapi([Route("/c", handler)], title="t", version="1")
    op: dict[str, Any] = document["paths"]["/c"]["get"]
    return op


def headers_of(op: dict[str, Any]) -> dict[str, tuple[bool, dict[str, Any]]]:
    return {
        p["name"]: (p["required"], p["schema"])
        for p in op.get("parameters", ())
        if p["in"] == "header"
    }


def test_statuses_of_preconditions_declare_their_headers() -> None:
    read = conditional_doc(responses={200: Thing, 304: None})
    assert headers_of(read) == {"If-None-Match": (False, {"type": "string", **NUL})}
    assert set(read["responses"]["200"]["headers"]) == {"ETag"}
    assert set(read["responses"]["304"]["headers"]) == {"ETag"}
    # 428: the precondition is required; a 412 alone makes it optional.
    write = conditional_doc(responses={200: Thing, 204: None}, errors=(412, 428))
    assert headers_of(write) == {"If-Match": (True, {"type": "string", **NUL})}
    assert "headers" not in write["responses"]["204"]  # no body, no representation to tag
    assert (
        headers_of(conditional_doc(responses={200: Thing}, errors=(412,)))["If-Match"][0] is False
    )
    plain = conditional_doc(responses={200: Thing}, errors=(404,))
    assert "parameters" not in plain
    assert "headers" not in plain["responses"]["200"]
    # A handler's own declaration wins over the implied one.
    own = conditional_doc(
        responses={200: Thing}, errors=(412,), request_headers=(("if-match", "mine", True),)
    )
    assert [p["description"] for p in own["parameters"]] == ["mine"]


def test_documented_replaces_the_decoders_bounds_in_the_document() -> None:
    class Secret(msgspec.Struct):
        value: Annotated[
            str,
            msgspec.Meta(
                min_length=1, max_length=1024, extra_json_schema={DOCUMENTED: {"minLength": 12}}
            ),
        ]

    handler = api(summary="x", responses={200: Secret})(fresh_handler())
    document = build_openapi([Route("/s", handler)], title="t", version="1")
    prop = document["components"]["schemas"]["Secret"]["properties"]["value"]
    assert prop == {"type": "string", "minLength": 12, "maxLength": 1024, **NUL}

    class Bad(msgspec.Struct):
        value: Annotated[str, msgspec.Meta(extra_json_schema={DOCUMENTED: 12})]

    bad = api(summary="x", responses={200: Bad})(fresh_handler())
    with pytest.raises(ValueError, match=DOCUMENTED):
        build_openapi([Route("/b", bad)], title="t", version="1")


def test_string_path_ids_are_typed_by_their_name() -> None:
    routes = [
        # A convertor (uuid) says what the parameter is, whatever its name.
        Route(path, api(summary="x", responses={200: None}, operation_id=path)(fresh_handler()))
        for path in ("/p/{product_id}", "/s/{session_id}", "/u/{user_id:uuid}")
    ]
    document = build_openapi(routes, title="t", version="1")
    schema = {
        path: ops["get"]["parameters"][0]["schema"] for path, ops in document["paths"].items()
    }
    assert schema == {
        "/p/{product_id}": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "/s/{session_id}": {"type": "string", "format": "uuid", **NUL},
        "/u/{user_id}": {"type": "string", "format": "uuid", **NUL},
    }


# The document of the app's own route table.


@pytest.fixture(scope="module")
def app_doc() -> dict[str, Any]:
    document = build_openapi(build_routes(lambda: b"{}"), title="hotpath", version="1")
    validate(document)
    return document


def parameters(op: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in op.get("parameters", ()) if p["in"] == where}


def test_app_operations_with_a_body_list_413_and_415(app_doc: dict[str, Any]) -> None:
    with_body = 0
    for ops in app_doc["paths"].values():
        for op in ops.values():
            if "requestBody" in op:
                with_body += 1
                for status in ("413", "415"):
                    content = op["responses"][status]["content"]
                    assert content == {"application/problem+json": {"schema": PROBLEM}}
    assert with_body >= 15


def test_app_product_preconditions_are_declared(app_doc: dict[str, Any]) -> None:
    product = app_doc["paths"]["/v1/products/{product_id}"]
    for method in ("patch", "delete"):
        headers = parameters(product[method], "header")
        assert set(headers) == {"If-Match"}
        assert headers["If-Match"]["required"] is True  # server.web.conditional: 428 without it
        assert {"412", "428"} <= set(product[method]["responses"])
    headers = parameters(product["get"], "header")
    assert set(headers) == {"If-None-Match"}
    assert headers["If-None-Match"]["required"] is False
    for status in ("200", "304"):
        assert "ETag" in product["get"]["responses"][status]["headers"]
    assert "ETag" in product["patch"]["responses"]["200"]["headers"]
    # The format the descriptions give is the one the server makes.
    example = f"`{etag('p', 42, 3)}`"
    assert example in product["get"]["responses"]["200"]["headers"]["ETag"]["description"]
    assert example in parameters(product["patch"], "header")["If-Match"]["description"]


IDEMPOTENCY_SAMPLES = [
    "",
    "a",
    "k" * 255,
    "k" * 256,
    "!~",
    "a b",
    " lead",
    "tab\there",
    "del\x7f",
    "caf\u00e9",
    "0f8e2a6c-5d1b-4c57-9a3e-6e1f0b7d2c44",
]


@pytest.mark.parametrize("key", IDEMPOTENCY_SAMPLES)
def test_app_idempotency_key_schema_is_the_servers_check(app_doc: dict[str, Any], key: str) -> None:
    header = parameters(app_doc["paths"]["/v1/orders"]["post"], "header")["Idempotency-Key"]
    assert header["required"] is True
    schema = header["schema"]
    assert (schema["minLength"], schema["maxLength"]) == (1, 255)
    # JSON Schema's pattern is unanchored (a search); no sample ends in a newline, where
    # Python's $ and ECMA-262's differ.
    documented = schema["minLength"] <= len(key) <= schema["maxLength"] and bool(
        re.search(schema["pattern"], key)
    )
    assert documented == bool(order_handlers._KEY.fullmatch(key)), key


def test_app_new_passwords_document_the_policy(app_doc: dict[str, Any]) -> None:
    schemas = app_doc["components"]["schemas"]
    new = [
        schemas["RegisterBody"]["properties"]["password"],
        schemas["ResetBody"]["properties"]["password"],
        schemas["ChangePasswordBody"]["properties"]["new_password"],
    ]
    for prop in new:
        assert (prop["minLength"], prop["maxLength"]) == (
            password_policy.MIN_LENGTH,
            password_policy.MAX_LENGTH,
        )
        assert "x-documented" not in prop
    # A password being checked is not judged by today's policy: only the decoder's bounds.
    for prop in (
        schemas["LoginBody"]["properties"]["password"],
        schemas["ChangePasswordBody"]["properties"]["current_password"],
        schemas["DeleteAccountBody"]["properties"]["password"],
    ):
        assert (prop["minLength"], prop["maxLength"]) == (1, 1024)


def test_app_permissions_and_scopes_are_enumerated(app_doc: dict[str, Any]) -> None:
    schemas = app_doc["components"]["schemas"]
    known = sorted(KNOWN_PERMISSIONS)
    for name, field in (("NewRoleBody", "permissions"), ("RolePatch", "permissions")):
        assert schemas[name]["properties"][field]["items"]["enum"] == known, name
    scope = schemas["NewKeyBody"]["properties"]["scopes"]["items"]
    assert scope["enum"] == known
    assert all(re.fullmatch(scope["pattern"].strip("^$"), p) for p in known)


def test_app_path_parameters_are_typed_as_their_handlers_parse_them(
    app_doc: dict[str, Any],
) -> None:
    checked = 0
    for route in build_routes(lambda: b"{}"):
        if not (isinstance(route, Route) and route.include_in_schema and route.param_convertors):
            continue
        source = inspect.getsource(inspect.unwrap(route.endpoint))
        # responses.path_id, or scope_path_id in an ASGI endpoint (server/web/asgi_endpoint.py).
        parsed_as_id = set(re.findall(r'path_id\((?:request|scope), "(\w+)"', source))
        for method in route.methods or ():
            if method == "HEAD":
                continue
            op = app_doc["paths"][route.path_format][method.lower()]
            params = parameters(op, "path")
            integers = {n for n, p in params.items() if p["schema"]["type"] == "integer"}
            assert integers == parsed_as_id, (method, route.path)
            for name in integers:
                assert params[name]["schema"] == {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 2**63 - 1,
                }
            checked += 1
    assert checked >= 15
    (session,) = parameters(
        app_doc["paths"]["/v1/auth/sessions/{session_id}"]["delete"], "path"
    ).values()
    assert session["schema"] == {"type": "string", "format": "uuid", **NUL}


def test_only_the_refresh_may_come_without_a_body() -> None:
    document = build_openapi(build_routes(lambda: b"{}"), title="t", version="1")
    optional = {
        (path, method)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation and not operation["requestBody"]["required"]
    }
    assert optional == {("/v1/auth/refresh", "post")}


def test_open_routes_that_read_credentials_document_the_401() -> None:
    paths = build_openapi(build_routes(lambda: b"{}"), title="t", version="1")["paths"]
    # Credentials sent to a public read must verify; sign-in endpoints do not read them.
    assert "401" in paths["/v1/products"]["get"]["responses"]
    assert "401" in paths["/v1/products/{product_id}"]["get"]["responses"]
    assert "401" not in paths["/livez"]["get"]["responses"]
    assert "401" not in paths["/.well-known/jwks.json"]["get"]["responses"]
    assert "403" in paths["/v1/orders"]["get"]["responses"]  # a customer naming another user


def test_a_stock_change_of_zero_is_documented_as_refused() -> None:
    document = build_openapi(build_routes(lambda: b"{}"), title="t", version="1")
    body = document["paths"]["/v1/products/{product_id}/stock"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    delta = document["components"]["schemas"][ref]["properties"]["delta"]
    assert delta["not"] == {"const": 0}


# What the app's document says values may be, and the server taking exactly those.


def string_schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "string" or (isinstance(kind, list) and "string" in kind):
            yield node
        for value in node.values():
            yield from string_schemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from string_schemas(item)


def documented(app_doc: dict[str, Any], ref: str) -> OAS31Validator:
    """A validator of one component, its $refs resolved in the whole document (no format
    checks: JSON Schema 2020-12 leaves them to annotation)."""
    return OAS31Validator({**app_doc, "$ref": ref})


def test_app_strings_refuse_nul(app_doc: dict[str, Any]) -> None:
    strings = [s for s in string_schemas(app_doc) if not {"enum", "const"} & s.keys()]
    assert len(strings) > 50
    for schema in strings:
        patterns = [
            schema.get("pattern"),
            *(part.get("pattern") for part in schema.get("allOf", ())),
        ]
        assert NUL_FREE in patterns, schema
    assert not re.search(NUL_FREE, "a\x00b")
    assert re.search(NUL_FREE, "a\\u0000b")  # a backslash and "u0000": text, no NUL


def test_app_integers_admit_a_number_with_no_fraction(app_doc: dict[str, Any]) -> None:
    # JSON Schema's integer is a number with no fraction, however spelled: 2.0 is one.
    price = documented(app_doc, "#/components/schemas/Price")
    assert price.is_valid({"amount_minor": 1999.0, "currency": "EUR"})
    assert not price.is_valid({"amount_minor": 19.99, "currency": "EUR"})
    assert not price.is_valid({"amount_minor": "1999", "currency": "EUR"})


def test_app_cursors_are_documented_as_the_codec_writes_them(app_doc: dict[str, Any]) -> None:
    cursors = [
        parameters(op, "query")["cursor"]
        for ops in app_doc["paths"].values()
        for op in ops.values()
        if "cursor" in parameters(op, "query")
    ]
    assert len(cursors) >= 5
    for cursor in cursors:
        assert cursor["schema"]["pattern"] == CURSOR_PATTERN
        assert "next_cursor" in cursor["description"]
    for unsigned in ("x", "%%%", "a" * 23, "a" * 25, "a" * 24 + "=", " " + "a" * 24):
        assert not re.search(CURSOR_PATTERN, unsigned), unsigned


@given(
    scope=st.text(max_size=20),
    position=st.lists(
        st.one_of(
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
            st.datetimes(timezones=st.just(dt.UTC)).map(dt.datetime.isoformat),
        ),
        max_size=3,
    ),
)
def test_every_cursor_the_codec_writes_matches_the_documented_pattern(
    scope: str, position: list[Any]
) -> None:
    cursor = CursorCodec("k" * 32).encode(scope, tuple(position))
    assert re.search(CURSOR_PATTERN, cursor), cursor


async def test_a_cursor_is_taken_only_where_the_document_allows_it(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    category = unique_category()
    for _ in range(3):
        await catalog.create(category=category)
    first = await http.get("/v1/products", params={"category": category, "limit": 2})
    cursor = first.json()["next_cursor"]
    assert re.search(CURSOR_PATTERN, cursor)
    for taken in (cursor, ""):
        answer = await http.get("/v1/products", params={"category": category, "cursor": taken})
        assert answer.status_code == 200, (taken, answer.text)
    # Outside the pattern: refused by both. Inside it but unsigned: the 400 the description
    # names (a signature cannot be written as a schema).
    for refused in ("x", "%%%", "a" * 25, "a" * 24):
        answer = await http.get("/v1/products", params={"category": category, "cursor": refused})
        assert_problem(answer, 400, "invalid-cursor", case=refused)


async def test_a_signed_cursor_respelled_is_refused(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    category = unique_category()
    for _ in range(3):
        await catalog.create(category=category)
    first = await http.get("/v1/products", params={"category": category, "limit": 2})
    cursor = first.json()["next_cursor"]
    for respelled in (cursor + "=", cursor[:10] + "!" + cursor[10:], " " + cursor):
        assert not re.search(CURSOR_PATTERN, respelled)
        answer = await http.get("/v1/products", params={"category": category, "cursor": respelled})
        assert_problem(answer, 400, "invalid-cursor", case=respelled)


NEW_PRODUCT_SAMPLES: list[dict[str, Any]] = [
    {},
    {"price": {"amount_minor": 1999.0, "currency": "EUR"}},
    {"stock": 3.0},
    {"name": "Kettle \\u0000"},  # a backslash and "u0000": no NUL
    {"price": {"amount_minor": 19.99, "currency": "EUR"}},
    {"price": {"amount_minor": "1999", "currency": "EUR"}},
    {"stock": 1.5},
    {"stock": -1.0},
    {"stock": True},
    {"name": "Ket\x00tle"},
    {"description": "\x00"},
    {"sku": "SKU\x00"},
]


@pytest.mark.parametrize("change", NEW_PRODUCT_SAMPLES, ids=repr)
async def test_a_new_product_is_taken_exactly_when_the_document_says(
    http: httpx.AsyncClient, catalog: Catalog, app_doc: dict[str, Any], change: dict[str, Any]
) -> None:
    body = {
        "sku": unique_sku(),
        "name": "Kettle",
        "category": unique_category(),
        "price": {"amount_minor": 1999, "currency": "EUR"},
        "stock": 3,
        **change,
    }
    valid = documented(app_doc, "#/components/schemas/NewProductBody").is_valid(body)

    response = await http.post("/v1/products", json=body, headers=catalog.headers)

    if valid:
        assert response.status_code == 201, response.text
        product = response.json()
        assert product["price"]["amount_minor"] == int(body["price"]["amount_minor"])
        assert product["stock"] == int(body["stock"])
        assert isinstance(product["stock"], int)
    else:
        assert_problem(response, 422, "validation-failed")


@pytest.mark.parametrize(
    "body",
    [
        {"delta": 2.0, "reason": "recount"},
        {"delta": -1e0, "reason": "recount"},
        {"delta": 0.0, "reason": "recount"},
        {"delta": 1.5, "reason": "recount"},
        {"delta": 2, "reason": "re\x00count"},
    ],
    ids=repr,
)
async def test_a_stock_change_is_taken_exactly_when_the_document_says(
    http: httpx.AsyncClient, catalog: Catalog, app_doc: dict[str, Any], body: dict[str, Any]
) -> None:
    product = await catalog.create(stock=5)
    valid = documented(app_doc, "#/components/schemas/StockBody").is_valid(body)

    response = await http.post(
        f"/v1/products/{product['id']}/stock", json=body, headers=catalog.headers
    )

    if valid:
        assert response.status_code == 200, response.text
        assert response.json()["stock"] == 5 + int(body["delta"])
    else:
        assert_problem(response, 422, "validation-failed")


async def test_a_query_value_with_nul_is_refused_by_both(
    http: httpx.AsyncClient, app_doc: dict[str, Any]
) -> None:
    q = parameters(app_doc["paths"]["/v1/products"]["get"], "query")["q"]
    (text,) = [s for s in q["schema"]["anyOf"] if s.get("type") == "string"]
    assert not OAS31Validator(text).is_valid("kettle\x00")
    assert_problem(await http.get("/v1/products", params={"q": "kettle\x00"}), 400)
