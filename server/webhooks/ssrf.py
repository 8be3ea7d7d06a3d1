"""Where webhooks may go: the SSRF guard.

A webhook URL is checked when an endpoint is created or changed, and its host is resolved and
checked again on every connection the worker opens (DNS can change); the worker connects to
the address it checked, never resolving twice, so a DNS rebind between check and connect has
nothing to win. Refused: any scheme but https (http only with HOTPATH_WEBHOOK_ALLOW_HTTP,
never in production), credentials in the URL, and any address that is not a public unicast
one: loopback, private, link-local, CGNAT, multicast, unspecified, reserved, documentation,
cloud metadata, and IPv6 forms that embed such an IPv4 address (IPv4-mapped and -compatible,
NAT64, 6to4, Teredo). Numeric hosts other than a dotted quad (``2130706433``, ``0x7f.1``,
``0177.0.0.1``), which resolvers read as IPv4, are refused too. Networks in
HOTPATH_WEBHOOK_ALLOW_NETWORKS are allowed whatever they are (tests, private deployments).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048
_METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack...
        ipaddress.ip_address("169.254.170.2"),  # ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)
# Named explicitly (not only through is_global) so the refusal says what the address is.
_BLOCKED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "a reserved (IPv4-compatible) address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """The URL may not receive webhooks; the message says why (safe to show the caller)."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # lower-case; an IPv6 literal without brackets
    port: int
    literal: IPAddress | None  # the host, when it is an IP address


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (getaddrinfo, in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [
        str(sockaddr[0])
        for family, _, _, _, sockaddr in infos
        if family in (socket.AF_INET, socket.AF_INET6)
    ]


class UrlGuard:
    def __init__(
        self,
        *,
        allow_http: bool,
        allow_networks: Sequence[str] = (),
        resolver: Resolver = system_resolver,
    ) -> None:
        self.allow_http = allow_http
        self.allow_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        self.resolver = resolver

    def check_url(self, url: str) -> Target:
        """Everything that can be checked without DNS; raises UnsafeUrl."""
        if len(url) > MAX_URL_LENGTH:
            raise UnsafeUrl(f"The URL is longer than {MAX_URL_LENGTH} characters.")
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise UnsafeUrl("The URL contains whitespace or control characters.")
        if not url.isascii():
            raise UnsafeUrl("Write the URL in ASCII (an internationalised name in its xn-- form).")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise UnsafeUrl("The URL is not valid.") from None
        scheme = parts.scheme.lower()
        if scheme == "http" and not self.allow_http:
            raise UnsafeUrl("The URL must use https.")
        if scheme not in ("https", "http"):
            raise UnsafeUrl("The URL must use https.")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise UnsafeUrl("The URL must not carry credentials.")
        if parts.fragment:
            raise UnsafeUrl("The URL must not have a fragment.")
        host = (parts.hostname or "").lower()
        if not host:
            raise UnsafeUrl("The URL has no host.")
        if port == 0:
            raise UnsafeUrl("The URL's port must be from 1 to 65535.")
        literal = _ip_literal(host)
        if literal is None:
            numeric = _whatwg_ipv4(host)
            if numeric is not None:
                self.check_address(numeric)
                raise UnsafeUrl(f"Write the IPv4 address {numeric} as four decimal numbers.")
            if not _is_hostname(host):
                raise UnsafeUrl("The URL's host is not a valid host name.")
            if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
                raise UnsafeUrl("The URL's host is a local name.")
        else:
            self.check_address(literal)
        return Target(scheme, host, port or (443 if scheme == "https" else 80), literal)

    def check_address(self, address: IPAddress) -> None:
        """Raises UnsafeUrl unless the address may receive webhooks."""
        if any(address in net for net in self.allow_networks):
            return
        why = refusal(address)
        if why is not None:
            raise UnsafeUrl(
                f"The URL's host is {why} ({address}); webhooks go to public addresses."
            )

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The host's addresses, every one checked: if any is refused, the host is."""
        literal = _ip_literal(host)
        if literal is not None:
            self.check_address(literal)
            return [literal]
        try:
            answers = await self.resolver(host, port)
        except (OSError, UnicodeError):
            raise UnsafeUrl(f"The URL's host {host} does not resolve.") from None
        found: list[IPAddress] = []
        for answer in answers:
            address = ipaddress.ip_address(answer.split("%", 1)[0])
            self.check_address(address)
            if address not in found:
                found.append(address)
        if not found:
            raise UnsafeUrl(f"The URL's host {host} does not resolve.")
        return found


def refusal(address: IPAddress) -> str | None:
    """Why the address may not receive webhooks, or None when it is public unicast."""
    if address in _METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal(embedded)
            return None if inner is None else f"{inner} inside an IPv6 address"
    for net, what in _BLOCKED:
        if address in net:
            return what
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved or address.is_unspecified:
        return "a reserved address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private or not address.is_global:
        return "a private or reserved address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0] if ":" in host else host)
    except ValueError:
        return None


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a URL parser (and inet_aton) reads from a numeric host in any of its
    spellings (decimal, 0x hex, 0-prefixed octal, 1 to 4 parts); None if the host is a name."""
    labels = host.removesuffix(".").split(".")
    if not labels[-1] or _number(labels[-1]) is None:
        return None
    numbers = [_number(label) for label in labels]
    values = [n for n in numbers if n is not None]
    # Ends in a number but is no address: refused rather than guessing what a resolver does.
    if len(labels) > 4 or len(values) != len(labels):
        raise UnsafeUrl("The URL's host is neither a host name nor an IPv4 address.")
    if any(v > 255 for v in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise UnsafeUrl("The URL's host is neither a host name nor an IPv4 address.")
    result = values[-1]
    for i, value in enumerate(values[:-1]):
        result += value << (8 * (3 - i))
    return ipaddress.IPv4Address(result)


def _number(label: str) -> int | None:
    try:
        if label[:2] in ("0x", "0X"):
            return int(label[2:] or "0", 16)
        if len(label) > 1 and label.startswith("0"):
            return int(label[1:], 8)
        return int(label, 10) if label.isdigit() else None
    except ValueError:
        return None


def _is_hostname(host: str) -> bool:
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isalnum() or c in "-_" for c in label)
        for label in labels
    )
