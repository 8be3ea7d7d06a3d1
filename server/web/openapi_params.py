"""What the OpenAPI document says of a request's parameters and headers, beyond the types."""

from __future__ import annotations

from typing import Any

from starlette.convertors import (
    Convertor,
    FloatConvertor,
    IntegerConvertor,
    StringConvertor,
    UUIDConvertor,
)

from server.web.apidoc import EndpointDoc

# Every body is read by responses.read_json (415 unless JSON) behind the body limit (413 too
# large, 408 too slow).
BODY_PROBLEMS = frozenset({408, 413, 415})

# routes.py uses no convertors, so every path parameter arrives as a string; how a handler
# parses one goes with its name, the same on every route. tests/test_openapi.py checks the
# handlers against this table.
_BIGINT_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    # responses.path_id: ASCII digits, no sign or leading zero, within bigint; else a 404.
    "user_id": _BIGINT_ID,
    "product_id": _BIGINT_ID,
    "order_id": _BIGINT_ID,
    "endpoint_id": _BIGINT_ID,
    "delivery_id": _BIGINT_ID,
    # auth.handlers.delete_session: uuid.UUID() or a 404.
    "session_id": {"type": "string", "format": "uuid"},
}

# A declared request header is a string unless the server checks it closer.
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    # orders.handlers._KEY: 1 to 255 visible ASCII characters (0x21-0x7E), so no spaces.
    "idempotency-key": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[\\x21-\\x7e]{1,255}$",
    },
}

# server/web/pagination.py's cursor: base64url without padding (so never 1 past a multiple of
# 4 characters) of a 16-byte HMAC tag and the JSON of a position, at least "[]": 24 characters
# or more. Empty asks for the first page, as no cursor does (every listing handler). A string
# of that form the server did not sign is still a 400 invalid-cursor.
CURSOR_PATTERN = "^(?:(?:[A-Za-z0-9_-]{4}){6,}(?:[A-Za-z0-9_-]{2,3})?)?$"
QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "cursor": {
        "description": "Opaque: the `next_cursor` of the page before, for the same listing with "
        "the same filters and sort (empty: the first page). It is signed: any other value is a "
        "400 invalid-cursor.",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
    },
}

# PostgreSQL text cannot hold NUL: server.web.responses refuses \u0000 in a JSON body (422),
# read_query in a query value (400), path_text in a path (404). Every string says so.
NUL_FREE = "^[^\\u0000]*$"

# server/web/conditional.py: the ETag format and how each precondition compares (RFC 9110 13.1).
_ETAG_FORMAT = (
    '`"<kind><id>v<version>"`, a product\'s `"p42v3"`; a compressed answer\'s tag ends in its '
    'coding (`"p42v3-gzip"`), and either spelling may be sent back'
)
ETAG_HEADER = {
    "description": f"The strong entity tag of this version of the resource: {_ETAG_FORMAT}.",
    "schema": {"type": "string"},
}
_IF_NONE_MATCH = (
    "ETags of versions you hold, comma-separated, as the `ETag` header gave them; one naming "
    "the current version (weak comparison: `W/` is ignored), or `*`, answers 304."
)
_IF_MATCH = (
    "The `ETag` of the version you last read (several may be listed, comma-separated): the "
    "change applies only to that version, else 412. Strong comparison: weak tags never match. "
    "`*` matches whatever version is current; a missing or deleted resource is a 404 whatever "
    f"the header says. ETags are {_ETAG_FORMAT}."
)


def request_headers(doc: EndpointDoc) -> list[tuple[str, str, bool]]:
    """The declared headers, plus the preconditions its statuses imply: a 304 answers
    If-None-Match, a 412 a failed If-Match, which a 428 says is required."""
    headers = list(doc.request_headers)
    declared = {name.lower() for name, _, _ in headers}
    if 304 in doc.responses and "if-none-match" not in declared:
        headers.append(("If-None-Match", _IF_NONE_MATCH, False))
    if 412 in doc.errors and "if-match" not in declared:
        headers.append(("If-Match", _IF_MATCH, 428 in doc.errors))
    return headers


def path_schema(name: str, convertor: Convertor[Any]) -> dict[str, Any]:
    # Starlette's int and float convertors match digits only, so values are never negative.
    if isinstance(convertor, IntegerConvertor):
        return {"type": "integer", "minimum": 0}
    if isinstance(convertor, FloatConvertor):
        return {"type": "number", "minimum": 0}
    if isinstance(convertor, UUIDConvertor):
        return {"type": "string", "format": "uuid"}
    if type(convertor) is StringConvertor and name in _PATH_PARAMETERS:
        return _PATH_PARAMETERS[name]
    return {"type": "string"}
