"""What each field of a query Struct takes: its one spelling, the values of an enumeration, and
the pointer that names a query parameter in a problem's ``errors``."""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec

__all__ = ["choices", "param_pointer", "spellings"]


def param_pointer(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")


_query_choices: dict[type, dict[str, tuple[str, ...]]] = {}


def choices(kind: type) -> dict[str, tuple[str, ...]]:
    """The allowed values of each enumerated (Literal) field of a query Struct."""
    found = _query_choices.get(kind)
    if found is None:
        found = {}
        info = msgspec.inspect.type_info(kind)
        for field in getattr(info, "fields", ()):
            for option in _options(field.type):
                if isinstance(option, msgspec.inspect.LiteralType):
                    found[field.name] = tuple(str(value) for value in option.values)
        _query_choices[kind] = found
    return found


# msgspec's lax conversion (needed to read "20" as an int) also reads "5.0" and "1e1" as ints
# and "0.5" as a date-time (seconds since 1970): each query field takes its own spelling only.
_INTEGER = re.compile(r"-?[0-9]+").fullmatch
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
).fullmatch
_BOOLEAN = frozenset(("true", "false")).__contains__
_SPELLING_OF: dict[type, tuple[Callable[[str], object], str]] = {
    msgspec.inspect.IntType: (_INTEGER, "an integer"),
    msgspec.inspect.DateTimeType: (_RFC3339, "an RFC 3339 date-time with an offset"),
    msgspec.inspect.BoolType: (_BOOLEAN, "true or false"),
}
_query_spellings: dict[type, dict[str, tuple[Callable[[str], object], str] | None]] = {}


def spellings(kind: type) -> dict[str, tuple[Callable[[str], object], str] | None]:
    """Each field of a query Struct, with the check its text must pass (None: any text)."""
    found = _query_spellings.get(kind)
    if found is None:
        found = {}
        info = msgspec.inspect.type_info(kind)
        for field in getattr(info, "fields", ()):
            checks = {
                _SPELLING_OF[type(option)]
                for option in _options(field.type)
                if type(option) in _SPELLING_OF
            }
            found[field.name] = checks.pop() if len(checks) == 1 else None
        _query_spellings[kind] = found
    return found


def _options(field_type: msgspec.inspect.Type) -> tuple[msgspec.inspect.Type, ...]:
    field_type = _bare(field_type)
    if isinstance(field_type, msgspec.inspect.UnionType):
        return tuple(
            _bare(t) for t in field_type.types if not isinstance(t, msgspec.inspect.NoneType)
        )
    return (field_type,)


def _bare(field_type: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """The type without the documentation (`Meta(description=...)`) wrapped around it."""
    while isinstance(field_type, msgspec.inspect.Metadata):
        field_type = field_type.type
    return field_type
