from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
import uuid
from typing import Annotated, Literal

import msgspec
import orjson
import pytest
from starlette.requests import Request

from server.web import errors
from server.web.responses import decode_json, dumps, header, json_pointer, path_id, read_query


class Item(msgspec.Struct, forbid_unknown_fields=True):
    product_id: int
    quantity: int


class Order(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Item]
    note: str = ""


def test_validation_error_points_at_the_bad_field() -> None:
    with pytest.raises(errors.ValidationFailed) as caught:
        decode_json(b'{"items": [{"product_id": 1, "quantity": "two"}]}', Order)
    (error,) = caught.value.extra["errors"]
    assert error["pointer"] == "/items/0/quantity"
    assert "Expected `int`, got `str`" in error["detail"]


def test_missing_and_unknown_fields_point_at_the_field() -> None:
    with pytest.raises(errors.ValidationFailed) as missing:
        decode_json(b'{"items": [{"product_id": 1}]}', Order)
    assert missing.value.extra["errors"][0]["pointer"] == "/items/0/quantity"
    with pytest.raises(errors.ValidationFailed) as unknown:
        decode_json(b'{"items": [], "admin": true}', Order)
    assert unknown.value.extra["errors"][0]["pointer"] == "/admin"


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": [',
        b'{"admin":',  # msgspec meets the unknown field before the missing value
        b'{"items": [{"product_id": 1, "quantity": "two"',
        b'{"items": [], "note": "\xff"}',  # not UTF-8
        b"\xfe\xff",
    ],
)
def test_malformed_json_is_a_400_not_a_422(body: bytes) -> None:
    with pytest.raises(errors.MalformedJson):
        decode_json(body, Order)


@pytest.mark.parametrize(
    ("body", "quantity"),
    [
        (b'{"items": [{"product_id": 1, "quantity": 2.0}]}', 2),
        (b'{"items": [{"product_id": 1, "quantity": 2e0}]}', 2),
        (b'{"items": [{"product_id": 1.0, "quantity": 1E2}]}', 100),
        (b'{"items": [{"product_id": 1, "quantity": -0.0}]}', 0),
    ],
)
def test_a_number_with_no_fraction_is_an_integer(body: bytes, quantity: int) -> None:
    # JSON Schema's (and so the OpenAPI document's) integer: 2.0 is one, spelled otherwise.
    (item,) = decode_json(body, Order).items
    assert (item.product_id, item.quantity) == (1, quantity)
    assert type(item.quantity) is int


@pytest.mark.parametrize(
    ("body", "pointer", "detail"),
    [
        (b'{"items": [{"product_id": 1, "quantity": 2.5}]}', "/items/0/quantity", "`float`"),
        (b'{"items": [{"product_id": 1, "quantity": "2"}]}', "/items/0/quantity", "`str`"),
        (b'{"items": [{"product_id": 1, "quantity": true}]}', "/items/0/quantity", "`bool`"),
        (b'{"items": [{"product_id": 1.0, "quantity": 2.0}], "note": 3.0}', "/note", "`int`"),
    ],
)
def test_anything_else_is_still_refused_where_it_is(body: bytes, pointer: str, detail: str) -> None:
    with pytest.raises(errors.ValidationFailed) as caught:
        decode_json(body, Order)
    (error,) = caught.value.extra["errors"]
    assert error["pointer"] == pointer
    assert detail in error["detail"]


@pytest.mark.parametrize(
    ("note", "refused"),
    [
        (rb"a\u0000b", True),
        (rb"a\\\u0000", True),  # an escaped backslash, then NUL
        (rb"a\\u0000", False),  # an escaped backslash, then the text u0000
        (rb"\\\\u0000", False),
    ],
)
def test_only_a_real_nul_escape_is_refused(note: bytes, refused: bool) -> None:
    body = b'{"items": [], "note": "' + note + b'"}'
    if refused:
        with pytest.raises(errors.ValidationFailed, match="NUL"):
            decode_json(body, Order)
    else:
        assert "\x00" not in decode_json(body, Order).note


def test_a_bad_dict_value_points_at_the_dict() -> None:
    class Tagged(msgspec.Struct):
        tags: dict[str, int]

    with pytest.raises(errors.ValidationFailed) as caught:
        decode_json(b'{"tags": {"a": 1, "b": "x"}}', Tagged)
    assert caught.value.extra["errors"][0]["pointer"] == "/tags"


def test_pointer_escapes_per_rfc6901() -> None:
    assert json_pointer("Expected `int` - at `$.a/b.c~d`")[0] == "/a~1b/c~0d"
    assert json_pointer("Expected `object`, got `array`") == ("", "Expected `object`, got `array`")


def test_dumps_handles_database_types() -> None:
    value = {
        "price": decimal.Decimal("12.30"),
        "id": uuid.UUID(int=1),
        "at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2026, 1, 2),
        "tags": frozenset({"a"}),
        "item": Item(1, 2),
    }
    decoded = orjson.loads(dumps(value))
    assert decoded["price"] == "12.30"
    assert decoded["id"] == "00000000-0000-0000-0000-000000000001"
    assert decoded["at"] == "2026-01-02T03:04:05Z"
    assert decoded["day"] == "2026-01-02"
    assert decoded["tags"] == ["a"]
    assert decoded["item"] == {"product_id": 1, "quantity": 2}


class Kind(enum.StrEnum):
    A = "a"


class Everything(msgspec.Struct):
    item: Item
    items: list[Item]
    at: dt.datetime
    local_at: dt.datetime
    day: dt.date
    price: decimal.Decimal
    id: uuid.UUID
    kind: Kind
    maybe: str | None
    flag: bool
    ratio: float
    text: str


def test_a_struct_is_encoded_byte_for_byte_as_its_builtins_would_be() -> None:
    value = Everything(
        item=Item(1, 2),
        items=[Item(3, 4), Item(5, 6)],
        at=dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        local_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        day=dt.date(2026, 1, 2),
        price=decimal.Decimal("12.30"),
        id=uuid.UUID(int=7),
        kind=Kind.A,
        maybe=None,
        flag=True,
        ratio=0.1,
        text='quote " backslash \\ nul \x00 é \u2028 😀',
    )
    assert dumps(value) == dumps(msgspec.to_builtins(value))
    assert dumps([value]) == b"[" + dumps(value) + b"]"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", 1), ("42", 42), (str(2**63 - 1), 2**63 - 1)]
    + [
        (bad, None) for bad in ("0", "012", "+1", "1_0", " 1", "\u0661", "-1", str(2**63), "9" * 30)
    ],
)
def test_path_ids_have_one_spelling_within_bigint(raw: str, expected: int | None) -> None:
    request = Request({"type": "http", "path_params": {"thing_id": raw}})
    if expected is None:
        with pytest.raises(errors.NotFound):
            path_id(request, "thing_id", "No such thing.")
    else:
        assert path_id(request, "thing_id", "No such thing.") == expected


@pytest.mark.parametrize("body", [b"[" * 1000, b'{"items": ' + b"[" * 1000, b'{"a":' * 1000])
def test_nesting_past_the_decoders_depth_is_a_400(body: bytes) -> None:
    with pytest.raises(errors.MalformedJson, match="nested too deeply"):
        decode_json(body, Order)


class Listing(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    since: dt.datetime | None = None


@pytest.mark.parametrize(
    "query",
    [
        b"size=5",  # unknown
        b"limit=5&limit=6",  # repeated
        b"limit=5.0",  # not an integer's spelling
        b"limit=1000",  # out of range
        b"since=2024-01-01T00:00:00",  # no offset
    ],
)
def test_read_query_answers_what_its_docstring_says(query: bytes) -> None:
    # The docstring is what a handler's author reads to document the route's errors.
    request = Request({"type": "http", "query_string": query, "headers": []})
    with pytest.raises(errors.AppError) as caught:
        read_query(request, Listing)
    stated = {int(status) for status in re.findall(r"\b[45]\d\d\b", read_query.__doc__ or "")}
    assert stated == {caught.value.status_code} == {400}


@pytest.mark.parametrize(
    ("query", "pointer"),
    [
        (b"limit=5%00", "/limit"),  # in a value: the parameter is named
        (b"lim%00it=5", ""),  # in a name: the whole query (CI's schemathesis run found it)
        (b"%F3%8C%80%A8%C2%BE%C2%91%00=%C3%AE", ""),
    ],
)
def test_a_nul_is_refused_and_the_problem_holds_none(query: bytes, pointer: str) -> None:
    # The OpenAPI document gives every string, a problem's pointer too, the NUL_FREE pattern.
    request = Request({"type": "http", "query_string": query, "headers": []})
    with pytest.raises(errors.InvalidParameter) as caught:
        read_query(request, Listing)
    [error] = caught.value.extra["errors"]
    assert error["pointer"] == pointer
    assert "\x00" not in orjson.dumps(caught.value.extra).decode()
    assert "\x00" not in str(caught.value.detail)


class Shipping(msgspec.Struct, forbid_unknown_fields=True):
    speed: Literal["standard", "express"]
    gift: Annotated[Literal["wrap", "card"] | None, msgspec.Meta(description="optional")] = None


class Parcel(msgspec.Struct, forbid_unknown_fields=True):
    shipping: list[Shipping]
    labels: dict[str, Literal["red", "blue"]] = {}


@pytest.mark.parametrize(
    ("body", "pointer", "allowed"),
    [
        (b'{"shipping": [{"speed": "fast"}]}', "/shipping/0/speed", "express, standard"),
        (b'{"shipping": [{"speed": "express", "gift": "bow"}]}', "/shipping/0/gift", "card, wrap"),
        (b'{"shipping": [], "labels": {"a": "green"}}', "/labels", "blue, red"),
    ],
)
def test_a_value_outside_an_enumeration_names_the_values_allowed(
    body: bytes, pointer: str, allowed: str
) -> None:
    with pytest.raises(errors.ValidationFailed) as caught:
        decode_json(body, Parcel)
    (error,) = caught.value.extra["errors"]
    assert error["pointer"] == pointer
    assert error["detail"].startswith("Invalid enum value")
    assert error["detail"].endswith(f"; expected one of: {allowed}")


def test_other_errors_name_no_values() -> None:
    with pytest.raises(errors.ValidationFailed) as caught:
        decode_json(b'{"shipping": [{"speed": 3}]}', Parcel)
    assert "expected one of" not in caught.value.extra["errors"][0]["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"if-none-match", b'"p1v2"')],
        [(b"accept", b"*/*"), (b"if-none-match", b'"a"'), (b"if-none-match", b'"b"')],
        [(b"if-none-match", "caf\u00e9".encode("latin-1"))],
    ],
)
def test_header_answers_what_request_headers_get_answers(
    headers: list[tuple[bytes, bytes]],
) -> None:
    request = Request({"type": "http", "headers": headers})
    assert header(request, b"if-none-match") == request.headers.get("if-none-match")
