"""orjson responses and the one way handlers read a JSON body."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import uuid
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from middleware.types import REQUEST_BODY
from server.web import errors
from server.web.query_values import allowed_values, param_pointer
from server.web.query_values import spellings as query_spellings

T = TypeVar("T")

_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_UTC_Z
_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_FIELD_IN_MESSAGE = re.compile(r"(?:required|unknown|invalid) field `([^`]+)`")
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
# A \u0000 escape, not an escaped backslash followed by "u0000" (the text \u0000, no NUL).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_TOO_DEEP = "The request body is not valid JSON: arrays and objects are nested too deeply."


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    if isinstance(value, uuid.UUID | dt.date):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, str):  # str subclasses (enums) pass through OPT_PASSTHROUGH_SUBCLASS
        return str(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


_encode_struct = msgspec.json.Encoder(decimal_format="string").encode


def dumps(content: Any) -> bytes:
    # A response schema (a Struct) straight through msgspec: the same bytes as orjson after
    # to_builtins(), without building the intermediate dicts (a third of a product's render).
    if isinstance(content, msgspec.Struct):
        return _encode_struct(content)
    return orjson.dumps(content, default=_default, option=_ORJSON_OPTIONS)


class PreparedJSON(Response):
    """A JSON body already encoded, with its extra headers already bytes: Starlette's header
    assembly (a dict walked and encoded per response) is skipped on the hottest reads."""

    def __init__(
        self, body: bytes, headers: list[tuple[bytes, bytes]], status_code: int = 200
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder


def json_pointer(message: str) -> tuple[str, str]:
    """Split a msgspec error message into (RFC 6901 pointer, human detail)."""
    match = _MSGSPEC_PATH.search(message)
    # A dict's value is reported as `[...]`, without its key: point at the dict itself.
    path = match.group("path").split("[...]", 1)[0] if match else ""
    detail = message[: match.start()] if match else message
    parts = [name or index for name, index in _PATH_PART.findall(path)]
    field = _FIELD_IN_MESSAGE.search(detail)
    if field:
        parts.append(field.group(1))
    pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)
    return pointer, detail


def decode_json(body: bytes, kind: type[T]) -> T:
    # find, not `in`: `in` first tries the bytes as an int (a TypeError raised and cleared).
    if body.find(b"\\u0000") != -1 and _NUL_ESCAPE.search(body):
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the driver.
        raise errors.ValidationFailed(
            "The request body contains a NUL character.",
            errors=[{"pointer": "", "detail": "NUL (\\u0000) is not allowed in strings"}],
        )
    try:
        value = _decoder(kind).decode(body)
    except msgspec.ValidationError:
        value = _decode_again(body, kind)
    except msgspec.DecodeError as exc:
        raise errors.MalformedJson(f"The request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise errors.MalformedJson("The request body is not valid UTF-8.") from None
    except RecursionError:
        # msgspec refuses nesting past its own depth limit with RecursionError, in the typed
        # decode (an `object` field) and in the untyped one above: a client's error, not ours.
        raise errors.MalformedJson(_TOO_DEEP) from None
    _refuse_repeated_keys(body)
    return value


def _decode_again(body: bytes, kind: type[T]) -> T:
    """After a ValidationError: malformed JSON is still a 400 (msgspec validates as it parses,
    so `{"a":` is refused for the unknown field before the parser reaches the missing value),
    and a number with no fraction (2.0, 1e2) is an integer, as JSON Schema and the OpenAPI
    document have it, where msgspec's strict int takes digits only. Only refused bodies pay."""
    try:
        whole = _whole_numbers(msgspec.json.decode(body))
        return _decoder(kind).decode(msgspec.json.encode(whole))
    except msgspec.ValidationError as exc:  # before DecodeError, its base class
        pointer, detail = json_pointer(str(exc))
        detail = _with_allowed_values(kind, pointer, detail)
        raise errors.ValidationFailed(
            "The request body does not match the schema.",
            errors=[{"pointer": pointer, "detail": detail}],
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise errors.MalformedJson("The request body is not valid JSON.") from None
    except RecursionError:
        raise errors.MalformedJson(_TOO_DEEP) from None


def _with_allowed_values(kind: type, pointer: str, detail: str) -> str:
    # msgspec names the bad value of an enumeration only: a client needs the values it may send.
    if not detail.startswith("Invalid enum value"):
        return detail
    allowed = allowed_values(kind, pointer)
    return f"{detail}; expected one of: {', '.join(allowed)}" if allowed else detail


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    return value


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return members


_PAIRS = json.JSONDecoder(object_pairs_hook=_once)


def _refuse_repeated_keys(body: bytes) -> None:
    """A key given twice in one object is a 400. msgspec keeps the last copy, as most parsers
    do; a proxy, a signature check or a log in front of us may read the first, so the body
    means two things (RFC 7493 2.3, I-JSON: names must be unique). Only bodies msgspec has
    accepted get here: valid UTF-8 JSON.

    ``_no_repeated_keys`` proves most bodies clean in C (an order's in half the instructions
    the json module's pairs hook takes, issue 19); a body it cannot prove clean is read again
    by the json module, which finds the key and words the answer, as it always has."""
    if _no_repeated_keys(body):
        return
    try:
        _PAIRS.decode(body.decode())
    except _RepeatedKey as exc:
        raise errors.MalformedJson(
            f"The request body gives the key {exc.key!r} twice in one object: send it once."
        ) from None
    except (ValueError, RecursionError):
        return  # past the json module's own limits (digits, depth), which msgspec does not have


def _no_repeated_keys(body: bytes) -> bool:
    """True when no object in ``body`` (JSON msgspec accepted) can give a key twice; False
    when it may (then the exact check decides).

    Every ``:`` of a JSON text is a member's (one per key given) or inside a string. msgspec
    decodes the body into dicts (a repeated key's members become one: the first key, the last
    value) and encodes them again, one ``:`` per key kept and each string's own ``:``s. No
    escape but ``\\u003a``/``\\u003A`` decodes to a ``:`` (``\\"``, ``\\/``, ``\\n``, other
    ``\\u`` escapes are other characters), and numbers and literals hold none; so without a
    ``\\u003`` in the body the encoding has as many ``:``s as the body exactly when no member
    was merged away, and fewer otherwise. Two spellings of one key (``"a"``, ``"\\u0061"``
    or ``"a\\/b"``, ``"a/b"``) are one key in the dict too, so they count as repeated."""
    # find, not `in`, which first tries the bytes as an int (a TypeError raised and cleared).
    if body.find(b"\\u003") != -1:
        return False
    try:
        again = _encode_any(_decode_any(body))
    except (ValueError, RecursionError, OverflowError):  # msgspec's errors are ValueErrors
        return False
    return again.count(b":") == body.count(b":")


_decode_any = msgspec.json.Decoder().decode
_encode_any = msgspec.json.Encoder().encode


def header(request: Request, name: bytes) -> str | None:
    """The first value of the header ``name`` (lower case), read from the scope: what
    ``request.headers.get`` answers, without building a Headers object on a hot read."""
    return scope_header(request.scope, name)


def scope_header(scope: Scope, name: bytes) -> str | None:
    """``header`` from the scope, for an ASGI endpoint (server/web/asgi_endpoint.py)."""
    value: bytes
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_json(request: Request, kind: type[T]) -> T:
    # The first value of each header, as request.headers.get answers, in one pass over the
    # scope's list, without building a Headers object.
    content_type = encoding = None
    value: bytes
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            if content_type is None:
                content_type = value
        elif name == b"content-encoding" and encoding is None:
            encoding = value
    media = b"" if content_type is None else content_type.split(b";", 1)[0]
    media_type = media.decode("latin-1").strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise errors.UnsupportedMediaType("Send the body as application/json.")
    if encoding is not None and encoding.decode("latin-1").strip().lower() != "identity":
        # RFC 9110 15.5.16: a content coding the server does not decode is a 415 too.
        raise errors.UnsupportedMediaType("Send the body without a Content-Encoding.")
    return decode_json(await request_body(request), kind)


async def request_body(request: Request) -> bytes:
    """The request's body: the bytes BodyLimitMiddleware read whole before the app ran
    (``REQUEST_BODY`` in the scope), without a ``receive()`` and Starlette's ``body()`` loop
    through its stream's async generator; else, as without that layer, ``request.body()``."""
    body: bytes | None = request.scope.get(REQUEST_BODY)
    if body is not None:
        return body
    return await request.body()


def _query_items(raw: bytes) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, as Starlette's ``request.query_params`` reads
    them (``parse_qsl`` of its latin-1 text, blank values kept). Without an escape ('%' or '+')
    parse_qsl changes nothing a pair holds: split here, without building the QueryParams
    (two thirds of read_query's time on a list page's query, issue 19)."""
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    items = []
    for pair in text.split("&"):
        if pair:  # parse_qsl skips an empty one
            name, _, value = pair.partition("=")
            items.append((name, value))
    return items


def read_query(request: Request, kind: type[T]) -> T:
    """Query parameters into a Struct: unknown or repeated parameters and bad values are a 400."""
    values: dict[str, str] = {}
    for name, value in _query_items(request.scope["query_string"]):
        if "\x00" in name:
            # Every string the API answers is NUL-free, as its schemas say: a name that holds
            # NUL cannot be a pointer, so the error points at the whole query, as a NUL in a
            # body points at the whole body.
            raise errors.InvalidParameter(
                f"The parameter {name!r} contains a NUL character in its name.",
                extra={"errors": [{"pointer": "", "detail": "a parameter's name contains NUL"}]},
            )
        if "\x00" in value:
            raise errors.InvalidParameter(
                f"The parameter {name!r} contains a NUL character.",
                extra={"errors": [{"pointer": param_pointer(name), "detail": "contains NUL"}]},
            )
        if name in values:
            raise errors.UnknownParameter(
                f"The parameter {name!r} is given more than once.",
                extra={"errors": [{"pointer": param_pointer(name), "detail": "given twice"}]},
            )
        values[name] = value
    spellings = query_spellings(kind)
    # The set difference and its sort only when something is unknown (a view's test is cheaper).
    unknown = [] if values.keys() <= spellings.keys() else sorted(values.keys() - spellings.keys())
    if unknown:
        known = ", ".join(sorted(spellings))
        raise errors.UnknownParameter(
            f"Unknown query parameters: {', '.join(unknown)}. This list takes: {known}.",
            extra={
                "errors": [
                    {"pointer": param_pointer(name), "detail": "unknown parameter"}
                    for name in unknown
                ]
            },
        )
    for name, value in values.items():
        spelling = spellings[name]
        if spelling is not None and not spelling[0](value):
            raise errors.InvalidParameter(
                f"The query parameter {name} is not valid: expected {spelling[1]}.",
                extra={"errors": [{"pointer": f"/{name}", "detail": f"Expected {spelling[1]}"}]},
            )
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        # A bad query string (an over-large limit, a malformed date) is a bad request, not an
        # entity the server understood but refused.
        pointer, detail = json_pointer(str(exc))
        detail = _with_allowed_values(kind, pointer, detail)
        raise errors.InvalidParameter(
            f"The query parameter {pointer.lstrip('/') or '?'} is not valid: {detail}",
            extra={"errors": [{"pointer": pointer, "detail": detail}]},
        ) from None


_MAX_BIGINT = 2**63 - 1


def path_id(request: Request, name: str, missing: str) -> int:
    """A bigint id from the path, in one spelling only: ASCII digits, no sign or leading zero
    (``int()`` also takes "+1", "1_0" and "0012"), from 1 (ids are serials, and the OpenAPI
    document says ``minimum: 1``) within bigint (past it the driver would fail with a 500).
    Anything else names nothing: 404 with ``missing``, before any other check of the request
    (a 412 for an If-Match naming id 0 would answer for a resource that cannot exist)."""
    return scope_path_id(request.scope, name, missing)


def scope_path_id(scope: Scope, name: str, missing: str) -> int:
    """``path_id`` from the scope, for an ASGI endpoint (server/web/asgi_endpoint.py)."""
    raw: str = scope["path_params"][name]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or raw != str(int(raw)):
        raise errors.NotFound(missing)
    value = int(raw)
    if not 0 < value <= _MAX_BIGINT:
        raise errors.NotFound(missing)
    return value


def path_text(request: Request, name: str, missing: str) -> str:
    """A text path parameter that can name something: with a NUL (PostgreSQL text cannot hold
    one; the driver fails with a 500) or over 255 characters it names nothing, 404 with
    ``missing``."""
    raw: str = request.path_params[name]
    if "\x00" in raw or len(raw) > 255:
        raise errors.NotFound(missing)
    return raw
