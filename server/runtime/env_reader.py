"""Reading environment values: each reader checks one kind of value and collects what is wrong,
so that Settings can report every bad value at once."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from email.headerregistry import AddressHeader, BaseHeader
from email.message import EmailMessage
from typing import Any, TypeVar
from urllib.parse import urlsplit

from middleware.cors import normalise_origin

T = TypeVar("T")
N = TypeVar("N", int, float)
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_host(value: str) -> bool:
    """An IP address or a DNS host name: what a server binds to or a URL names."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        name = value.removesuffix(".")
        labels = name.split(".")
        return len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
    return True


def _public_url(value: str) -> str:
    url = urlsplit(value)  # ValueError on a broken [IPv6] part
    # A base that paths are appended to: no credentials, query or fragment to land after it.
    if url.scheme not in ("http", "https") or url.query or url.fragment or "@" in url.netloc:
        raise ValueError(value)
    if url.hostname is None or not is_host(url.hostname) or url.port == 0:  # .port checks too
        raise ValueError(value)
    return value.rstrip("/")


def _mailbox(value: str) -> str:
    # Parsed as server/runtime/mail.py's compose() will: as the From header of a message.
    message = EmailMessage()
    message["From"] = value  # ValueError on CR or LF
    header = message["From"]
    if not (isinstance(header, BaseHeader) and isinstance(header, AddressHeader)):
        raise ValueError(value)
    if header.defects or len(header.addresses) != 1:
        raise ValueError(value)
    address = header.addresses[0]
    if not (address.username and is_host(address.domain)):
        raise ValueError(value)
    return value


class EnvReader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        return None if value is None else value.strip()

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def _parse(
        self, name: str, default: T, parse: Callable[[str], T], what: str, *, echo: bool = True
    ) -> T:
        value = self.raw(name)
        if value is None or value == "":
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name} must be {what}" + (f", got {value!r}" if echo else ""))
            return default

    def _ranged(self, name: str, default: N, low: N, high: N, kind: type[N], what: str) -> N:
        def parse(value: str) -> N:
            number = kind(value)
            if not low <= number <= high:
                raise ValueError(value)
            return number

        return self._parse(name, default, parse, f"{what} from {low} to {high}")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return self._ranged(name, default, low, high, int, "an integer")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return self._ranged(name, default, low, high, float, "a number")

    def host(self, name: str, default: str) -> str:
        def parse(value: str) -> str:
            if not is_host(value):
                raise ValueError(value)
            return value

        return self._parse(name, default, parse, "an IP address or a host name")

    def public_url(self, name: str, default: str) -> str:
        return self._parse(
            name,
            default,
            _public_url,
            "an absolute http:// or https:// URL without credentials, query or fragment,"
            " e.g. https://api.example.com",
            echo="@" not in self.text(name, default),  # never echo a user:password@
        )

    def mailbox(self, name: str, default: str) -> str:
        return self._parse(
            name, default, _mailbox, "one email address, e.g. hotpath <no-reply@example.com>"
        )

    def boolean(self, name: str, default: bool) -> bool:
        table = {"1": True, "true": True, "yes": True, "on": True}
        table |= {"0": False, "false": False, "no": False, "off": False}

        def parse(value: str) -> bool:
            try:
                return table[value.lower()]
            except KeyError:
                raise ValueError(value) from None

        return self._parse(name, default, parse, "true or false")

    def choice(self, name: str, options: tuple[Any, ...], default: Any) -> Any:
        def parse(value: str) -> str:
            if value.lower() not in options:
                raise ValueError
            return value.lower()

        return self._parse(name, default, parse, "one of " + ", ".join(options))

    def rate(self, name: str, default: tuple[int, float]) -> tuple[int, float]:
        def parse(value: str) -> tuple[int, float]:
            count, _, window = value.partition("/")
            limit, seconds = int(count), float(window)
            if not (1 <= limit <= 10**9 and 0 < seconds <= 86400 and limit / seconds <= 10**6):
                raise ValueError(value)
            return limit, seconds

        return self._parse(name, default, parse, "requests/seconds, e.g. 1200/60")

    def origins(self, name: str) -> tuple[str, ...]:
        def parse(value: str) -> tuple[str, ...]:
            return tuple(
                normalise_origin(item.strip()) for item in value.split(",") if item.strip()
            )

        return self._parse(name, (), parse, "a comma-separated list of origins (https://host)")

    def networks(self, name: str) -> tuple[str, ...]:
        def parse(value: str) -> tuple[str, ...]:
            items = [item.strip() for item in value.split(",") if item.strip()]
            return tuple(str(ipaddress.ip_network(item, strict=False)) for item in items)

        return self._parse(name, (), parse, "a comma-separated list of IP networks")
