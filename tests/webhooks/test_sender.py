"""The sender's connections: resolved and checked once per connection and connected to the
checked address (pinned), reused between messages to one endpoint, no redirects followed,
answers read up to a cap, a strict timeout."""

from __future__ import annotations

from collections import Counter

from server.webhooks.sender import RESPONSE_CAP, Sender
from server.webhooks.ssrf import UrlGuard
from tests.fixtures.webhooks import Receiver, running_receiver

HEADERS = {"webhook-id": "msg_1", "webhook-timestamp": "0", "webhook-signature": "v1,x"}


def guard(answers: list[str], calls: Counter[str], *, allow: tuple[str, ...] = ()) -> UrlGuard:
    async def resolver(host: str, port: int) -> list[str]:
        answer = answers[min(calls[host], len(answers) - 1)]
        calls[host] += 1
        return [answer]

    return UrlGuard(allow_http=True, allow_networks=allow, resolver=resolver)


async def test_the_checked_address_is_connected_and_the_connection_reused() -> None:
    calls: Counter[str] = Counter()
    sender = Sender(guard(["127.0.0.1"], calls, allow=("127.0.0.0/8",)), timeout=5, connections=2)
    with running_receiver(Receiver()) as receiver:
        url = f"http://hooks.example.com:{receiver.port}/hooks"
        try:
            for _ in range(3):
                result = await sender.send(1, url, HEADERS, b"{}")
                assert (result.outcome, result.status) == ("succeeded", 200)
        finally:
            await sender.close()
    assert len(receiver.received) == 3
    assert receiver.received[0].headers["host"] == f"hooks.example.com:{receiver.port}"
    assert calls["hooks.example.com"] == 1  # one connection, kept alive for all three


async def test_a_rebind_to_a_refused_address_never_connects() -> None:
    calls: Counter[str] = Counter()
    # The first connection's check passes; the name then resolves to loopback, not allowed.
    sender = Sender(
        guard(["127.0.0.1", "127.0.0.2"], calls, allow=("127.0.0.1/32",)), timeout=5, connections=1
    )
    with running_receiver(Receiver(reply_headers={"connection": "close"})) as receiver:
        url = f"http://hooks.example.com:{receiver.port}/hooks"
        try:
            first = await sender.send(1, url, HEADERS, b"{}")
            second = await sender.send(1, url, HEADERS, b"{}")
        finally:
            await sender.close()
    assert first.outcome == "succeeded"
    assert second.outcome == "blocked"
    assert second.error is not None
    assert "loopback" in second.error
    assert len(receiver.received) == 1


async def test_redirects_are_not_followed() -> None:
    calls: Counter[str] = Counter()
    sender = Sender(guard(["127.0.0.1"], calls, allow=("127.0.0.0/8",)), timeout=5, connections=1)
    redirect = Receiver(answer=lambda n: 307, reply_headers={"location": "http://169.254.169.254/"})
    with running_receiver(redirect) as receiver:
        try:
            result = await sender.send(
                1, f"http://hooks.example.com:{receiver.port}/", HEADERS, b"{}"
            )
        finally:
            await sender.close()
    assert (result.outcome, result.status, result.error) == ("failed", 307, "HTTP 307")
    assert len(receiver.received) == 1


async def test_answers_are_read_up_to_the_cap() -> None:
    calls: Counter[str] = Counter()
    sender = Sender(guard(["127.0.0.1"], calls, allow=("127.0.0.0/8",)), timeout=5, connections=1)
    with running_receiver(Receiver(reply_body=b"x" * 200_000)) as receiver:
        try:
            result = await sender.send(
                1, f"http://hooks.example.com:{receiver.port}/", HEADERS, b"{}"
            )
        finally:
            await sender.close()
    assert result.outcome == "succeeded"
    assert result.excerpt == "x" * RESPONSE_CAP


async def test_a_slow_receiver_times_out() -> None:
    calls: Counter[str] = Counter()
    sender = Sender(guard(["127.0.0.1"], calls, allow=("127.0.0.0/8",)), timeout=0.3, connections=1)
    with running_receiver(Receiver(delay=3.0)) as receiver:
        try:
            result = await sender.send(
                1, f"http://hooks.example.com:{receiver.port}/", HEADERS, b"{}"
            )
        finally:
            await sender.close()
    assert result.outcome == "failed"
    assert result.error == "no complete answer within 0.3 s"
    assert 250 <= result.latency_ms < 2500  # not the 3 s the answer takes


async def test_the_url_rules_are_checked_again_at_send_time() -> None:
    calls: Counter[str] = Counter()
    strict = UrlGuard(allow_http=False)
    sender = Sender(strict, timeout=1, connections=1)
    try:
        result = await sender.send(1, "http://93.184.215.14/", HEADERS, b"{}")
    finally:
        await sender.close()
    assert (result.outcome, result.error) == ("blocked", "The URL must use https.")
    assert not calls
