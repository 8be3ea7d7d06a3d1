"""The `@api(...)` decorator: OpenAPI facts a handler declares about itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["API_ATTR", "DOCUMENTED", "EndpointDoc", "api", "endpoint_doc"]

API_ATTR = "__api__"
# A key of msgspec's `Meta(extra_json_schema=...)`: its mapping replaces keys of that value's
# schema in the OpenAPI document. For a rule the server checks after decoding (a password's
# length): msgspec writes its own constraints over extra_json_schema, so the document would
# show the decoder's looser bounds instead of those a client has to meet.
DOCUMENTED = "x-documented"

F = TypeVar("F", bound=Callable[..., Any])

_NO_BODY_STATUSES = frozenset({204, 205, 304})


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointDoc:
    """What the OpenAPI generator needs to know about one handler.

    `responses` maps a success status to its body type: a msgspec Struct, `list[Struct]`,
    any other type msgspec can describe (`str` for text), or None for no body. `errors` lists
    the statuses answered with application/problem+json; 500 is always documented.
    """

    summary: str
    responses: Mapping[int, type | None]
    description: str = ""
    tags: tuple[str, ...] = ()
    body: type | None = None
    # False where an empty body is accepted too (a refresh in cookie mode).
    body_required: bool = True
    query: type | None = None
    errors: tuple[int, ...] = ()
    auth: bool = False
    # With auth: whether an API key (X-API-Key, or as the bearer token) is accepted too.
    api_keys: bool = True
    request_headers: tuple[tuple[str, str, bool], ...] = ()
    response_media_type: str = "application/json"
    operation_id: str | None = None
    # Problem statuses whose answer carries extension members (RFC 9457 3.2): the Struct
    # describing them, documented beside the common problem members.
    problems: Mapping[int, type] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked at import time so a bad declaration fails at start-up, not in a docs build.
        if not self.summary:
            raise ValueError("api(): summary must not be empty")
        if not self.responses:
            raise ValueError("api(): at least one response status is required")
        for status, body in self.responses.items():
            if not 100 <= status <= 599:
                raise ValueError(f"api(): invalid response status {status}")
            if body is not None and (status < 200 or status in _NO_BODY_STATUSES):
                raise ValueError(f"api(): status {status} cannot have a body")
        for status in self.errors:
            if not 400 <= status <= 599:
                raise ValueError(f"api(): error status {status} is not 4xx/5xx")
        undeclared = set(self.problems) - set(self.errors)
        if undeclared:
            raise ValueError(f"api(): problems {sorted(undeclared)} are not in errors")
        clash = set(self.responses) & set(self.errors)
        if clash:
            raise ValueError(f"api(): statuses {sorted(clash)} in both responses and errors")
        # A read-only copy: the caller's dict must not change the document later.
        object.__setattr__(self, "responses", MappingProxyType(dict(self.responses)))
        object.__setattr__(self, "problems", MappingProxyType(dict(self.problems)))


def api(
    *,
    summary: str,
    responses: Mapping[int, type | None],
    description: str = "",
    tags: tuple[str, ...] = (),
    body: type | None = None,
    body_required: bool = True,
    query: type | None = None,
    errors: tuple[int, ...] = (),
    auth: bool = False,
    request_headers: tuple[tuple[str, str, bool], ...] = (),
    response_media_type: str = "application/json",
    operation_id: str | None = None,
    problems: Mapping[int, type] | None = None,
) -> Callable[[F], F]:
    """Attach an `EndpointDoc` to a handler as `__api__`; the handler itself is returned."""
    doc = EndpointDoc(
        summary=summary,
        responses=responses,
        description=description,
        tags=tags,
        body=body,
        body_required=body_required,
        query=query,
        errors=errors,
        auth=auth,
        request_headers=request_headers,
        response_media_type=response_media_type,
        operation_id=operation_id,
        problems=problems or {},
    )

    def decorate(func: F) -> F:
        func.__dict__[API_ATTR] = doc
        return func

    return decorate


def endpoint_doc(handler: object) -> EndpointDoc | None:
    """The `EndpointDoc` attached to `handler`, or None when it has none."""
    doc = getattr(handler, API_ATTR, None)
    return doc if isinstance(doc, EndpointDoc) else None
