"""What a field takes: a query parameter's one spelling, an enumeration's values (in a query or
a body), and the pointer that names a query parameter in a problem's ``errors``."""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec

__all__ = ["allowed_values", "param_pointer", "spellings"]


def param_pointer(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")


def allowed_values(kind: type, pointer: str) -> tuple[str, ...]:
    """The values the enumeration (a Literal) at ``pointer`` (RFC 6901, as msgspec's errors
    become) inside the Struct ``kind`` allows, to name them in an error; () when what is there
    is not an enumeration. Walked on errors only: nothing is cached per pointer."""
    node: msgspec.inspect.Type = msgspec.inspect.type_info(kind)
    for part in pointer.split("/")[1:]:
        name = part.replace("~1", "/").replace("~0", "~")
        node = _inside(node, name)
    # A dict's bad value is reported at the dict itself (json_pointer): look at its values.
    dicts = [o for o in _options(node) if isinstance(o, msgspec.inspect.DictType)]
    if dicts:
        node = dicts[0].value_type
    return tuple(
        str(value)
        for option in _options(node)
        if isinstance(option, msgspec.inspect.LiteralType)
        for value in option.values
    )


def _inside(node: msgspec.inspect.Type, name: str) -> msgspec.inspect.Type:
    """The type one step down: a Struct's field, a list's item, a dict's value."""
    for option in _options(node):
        if isinstance(option, msgspec.inspect.StructType):
            for field in option.fields:
                if field.encode_name == name:
                    return field.type
        elif isinstance(option, msgspec.inspect.ListType | msgspec.inspect.SetType):
            return option.item_type
        elif isinstance(option, msgspec.inspect.DictType):
            return option.value_type
    return msgspec.inspect.AnyType()


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
