"""The SSRF guard: what a webhook URL may be and which addresses its host may resolve to."""

from __future__ import annotations

import ipaddress

import pytest

from server.webhooks.ssrf import UnsafeUrl, UrlGuard, refusal

GUARD = UrlGuard(allow_http=False)
DEV = UrlGuard(allow_http=True)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        # loopback, in every spelling a resolver or URL parser accepts
        ("https://127.0.0.1/", "loopback"),
        ("https://127.255.255.254/", "loopback"),
        ("https://127.0.0.1./", "loopback"),
        ("https://2130706433/", "loopback"),  # decimal
        ("https://0x7f000001/", "loopback"),  # hex
        ("https://0x7f.1/", "loopback"),
        ("https://0x7f.0.0.1/", "loopback"),
        ("https://0177.0.0.1/", "loopback"),  # octal
        ("https://017700000001/", "loopback"),
        ("https://127.1/", "loopback"),
        ("https://127.0.1/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[0:0:0:0:0:0:0:1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback address inside an IPv6"),  # IPv4-mapped
        ("https://[::ffff:7f00:1]/", "loopback address inside an IPv6"),
        ("https://[64:ff9b::127.0.0.1]/", "loopback address inside an IPv6"),  # NAT64
        ("https://[2002:7f00:1::1]/", "loopback address inside an IPv6"),  # 6to4
        ("https://[::127.0.0.1]/", "IPv4-compatible"),
        # private, shared, link-local, metadata
        ("https://10.0.0.1/", "private"),
        ("https://10.1/", "private"),
        ("https://172.16.5.4/", "private"),
        ("https://172.31.255.255/", "private"),
        ("https://192.168.0.1/", "private"),
        ("https://100.64.0.1/", "carrier-grade NAT"),
        ("https://100.127.255.254/", "carrier-grade NAT"),
        ("https://169.254.1.1/", "link-local"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://2852039166/", "cloud metadata"),  # 169.254.169.254 in decimal
        ("https://169.254.170.2/", "cloud metadata"),
        ("https://100.100.100.200/", "cloud metadata"),
        ("https://[fd00:ec2::254]/", "cloud metadata"),
        ("https://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("https://[64:ff9b::a9fe:a9fe]/", "cloud metadata"),
        ("https://[fc00::1]/", "unique local"),
        ("https://[fd12:3456::1]/", "unique local"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[fe80::1%25eth0]/", "link-local"),
        ("https://[fec0::1]/", "site-local"),
        ("https://[::ffff:10.0.0.1]/", "private address inside an IPv6"),
        ("https://[64:ff9b::10.0.0.1]/", "private address inside an IPv6"),
        ("https://[2002:a00:1::]/", "private address inside an IPv6"),
        ("https://[64:ff9b:1::1]/", "local-use NAT64"),
        # unspecified, multicast, reserved, documentation, benchmarking
        ("https://0.0.0.0/", "unspecified"),
        ("https://0/", "unspecified"),
        ("https://[::]/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://239.255.255.250/", "multicast"),
        ("https://[ff02::1]/", "multicast"),
        ("https://240.0.0.1/", "reserved"),
        ("https://255.255.255.255/", "reserved"),
        ("https://192.0.2.10/", "documentation"),
        ("https://198.51.100.1/", "documentation"),
        ("https://203.0.113.1/", "documentation"),
        ("https://[2001:db8::1]/", "documentation"),
        ("https://198.18.0.1/", "benchmarking"),
        ("https://192.0.0.8/", "IETF protocol"),
        # local names
        ("https://localhost/", "local name"),
        ("https://LOCALHOST:8443/", "local name"),
        ("https://api.localhost/", "local name"),
        ("https://printer.local/", "local name"),
        ("https://metadata.google.internal/", "local name"),
        # shape
        ("http://93.184.215.14/", "https"),
        ("ftp://93.184.215.14/", "https"),
        ("file:///etc/passwd", "https"),
        ("gopher://93.184.215.14/", "https"),
        ("https://user:secret@93.184.215.14/", "credentials"),
        ("https://93.184.215.14@127.0.0.1/", "credentials"),
        ("https://93.184.215.14/#x", "fragment"),
        ("https://93.184.215.14:0/", "port"),
        ("https://93.184.215.14:99999/", "not valid"),
        ("https:///path", "no host"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/\r\nX-Injected: 1", "whitespace"),
        ("https://exämple.com/", "ASCII"),
        ("https://" + "a" * 2100 + ".com/", "longer"),
        ("https://1.2.3.4.5/", "neither"),
        ("https://256.1.1.1/", "neither"),
        ("https://1.2.3.0x100/", "neither"),
        ("https://0x5db8d70e/", "four decimal numbers"),  # a public address, oddly written
        ("https://-bad-.example.com/", "valid host name"),
        ("https://[::1/", "not valid"),
    ],
)
def test_refused(url: str, words: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        GUARD.check_url(url)
    assert words in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14/hooks",
        "HTTPS://93.184.215.14:8443/hooks?x=1",
        "https://[2606:4700:4700::1111]/hooks",
        "https://[::ffff:93.184.215.14]/",  # a mapped public address is public
        "https://[64:ff9b::5db8:d70e]/",  # NAT64 of a public address
        "https://example.com/hooks",
        "https://hooks.example.com./",
        "https://xn--bcher-kva.example/",
    ],
)
def test_accepted(url: str) -> None:
    GUARD.check_url(url)


def test_http_only_when_allowed() -> None:
    assert DEV.check_url("http://93.184.215.14/").port == 80
    with pytest.raises(UnsafeUrl, match="loopback"):
        DEV.check_url("http://127.0.0.1/")


def test_allowed_networks_let_their_addresses_through() -> None:
    guard = UrlGuard(allow_http=True, allow_networks=["127.0.0.0/8", "fd00::/8"])
    guard.check_url("http://127.0.0.1:8080/")
    guard.check_url("https://[fd00::5]/")
    with pytest.raises(UnsafeUrl):
        guard.check_url("https://10.0.0.1/")
    with pytest.raises(UnsafeUrl):
        guard.check_url("https://[::1]/")


def test_every_non_global_address_is_refused() -> None:
    samples = ["0.1.2.3", "10.9.8.7", "127.3.3.3", "169.254.9.9", "172.20.0.1", "192.168.9.9"]
    for text in samples:
        assert refusal(ipaddress.ip_address(text)) is not None, text
    for text in ("93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"):
        assert refusal(ipaddress.ip_address(text)) is None, text


async def test_a_host_is_refused_if_any_of_its_addresses_is() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]

    guard = UrlGuard(allow_http=False, resolver=mixed)
    with pytest.raises(UnsafeUrl, match="private"):
        await guard.resolve("hooks.example.com", 443)


async def test_resolved_addresses_are_checked() -> None:
    async def answers(host: str, port: int) -> list[str]:
        return {
            "public.example": ["93.184.215.14", "2606:4700:4700::1111"],
            "meta.example": ["169.254.169.254"],
            "mapped.example": ["::ffff:127.0.0.1"],
            "scoped.example": ["fe80::1%eth0"],
        }[host]

    guard = UrlGuard(allow_http=False, resolver=answers)
    found = await guard.resolve("public.example", 443)
    assert [str(a) for a in found] == ["93.184.215.14", "2606:4700:4700::1111"]
    for host, words in (
        ("meta.example", "metadata"),
        ("mapped.example", "loopback"),
        ("scoped.example", "link-local"),
    ):
        with pytest.raises(UnsafeUrl, match=words):
            await guard.resolve(host, 443)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def nothing(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    async def empty(host: str, port: int) -> list[str]:
        return []

    for resolver in (nothing, empty):
        with pytest.raises(UnsafeUrl, match="does not resolve"):
            await UrlGuard(allow_http=False, resolver=resolver).resolve("gone.example", 443)


async def test_literals_are_not_resolved() -> None:
    async def never(host: str, port: int) -> list[str]:
        raise AssertionError("resolved a literal")

    guard = UrlGuard(allow_http=False, resolver=never)
    assert [str(a) for a in await guard.resolve("93.184.215.14", 443)] == ["93.184.215.14"]
    with pytest.raises(UnsafeUrl):
        await guard.resolve("::1", 443)


async def test_the_system_resolver_sees_through_localhost() -> None:
    """The real resolver: a name that /etc/hosts maps to loopback is refused when resolved."""
    guard = UrlGuard(allow_http=False)
    with pytest.raises(UnsafeUrl, match="loopback"):
        await guard.resolve("localhost", 443)
