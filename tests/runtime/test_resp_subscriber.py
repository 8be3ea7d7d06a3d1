"""follow_channel on one Redis server, through server/runtime/resp_subscriber.py's reader:
messages in order once the subscription is up, the subscription's ups and downs through a
killed connection, a stalled Redis and a restart, the client's address, credentials, database,
name and TLS, and nothing left behind when the task is cancelled. Real Redis: the shared one for
normal cases (a channel of the test's own), one of the test's own for the rest."""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import cast

import coredis
import pytest
from structlog.typing import FilteringBoundLogger

from server.runtime import pubsub, resp_subscriber
from server.runtime.pubsub import follow_channel, publish
from server.runtime.redis_client import make_client
from server.runtime.redis_link import RedisLink, open_redis
from server.runtime.resp_subscriber import RespError, _parse, _Push, _Subscriber
from tests.fixtures.app import events
from tests.fixtures.databases import REDIS_URL
from tests.fixtures.redis_cluster import make_certificates
from tests.fixtures.support import ThrowawayRedis, free_port, until


class Followed:
    """What follow_channel told: True / False for the subscription up / down, and each
    message's data, in the order told."""

    def __init__(self) -> None:
        self.told: list[object] = []

    @property
    def up(self) -> bool:
        states = [told for told in self.told if isinstance(told, bool)]
        return bool(states) and states[-1]

    @property
    def messages(self) -> list[object]:
        return [told for told in self.told if not isinstance(told, bool)]

    def ups_and_downs(self) -> list[bool]:
        return [told for told in self.told if isinstance(told, bool)]


@asynccontextmanager
async def following(
    link: RedisLink, channel: str, logger: FilteringBoundLogger
) -> AsyncIterator[Followed]:
    followed = Followed()
    task = asyncio.create_task(
        follow_channel(
            link,
            channel,
            on_message=followed.told.append,
            on_subscribed=followed.told.append,
            logger=logger,
            event="test",
        )
    )
    try:
        await until(lambda: followed.up, limit=5)
        yield followed
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def channel_name() -> str:
    return f"hotpath:test:channel:{secrets.token_hex(6)}"


async def subscribers(link: RedisLink, channel: str) -> int:
    assert link.client is not None
    counts = await link.client.pubsub_numsub(channel)
    return int(counts[channel])


async def test_messages_arrive_in_order_once_the_subscription_is_up(
    logger: FilteringBoundLogger,
) -> None:
    channel = channel_name()
    sent = [str(n) for n in range(300)] + ["~é ünïcode", "", "x" * 70_000]
    async with (
        open_redis(REDIS_URL, timeout=0.5, logger=logger) as link,
        following(link, channel, logger) as followed,
    ):
        assert link.client is not None
        for message in sent:
            assert await publish(link.client, channel, message) == 1
        await until(lambda: len(followed.messages) == len(sent), limit=5)
        assert followed.told == [True, *sent]


async def test_cancelling_leaves_no_task_and_no_connection(logger: FilteringBoundLogger) -> None:
    channel = channel_name()
    async with open_redis(REDIS_URL, timeout=0.5, logger=logger) as link:
        before = asyncio.all_tasks()
        async with following(link, channel, logger) as followed:
            assert await subscribers(link, channel) == 1
        assert followed.ups_and_downs() == [True, False]
        assert asyncio.all_tasks() == before
        # The socket is closed, not left to the garbage collector: Redis sees it go at once.
        await until_async(lambda: subscribers(link, channel), 0, limit=2)


async def until_async(probe: object, expected: object, *, limit: float) -> None:
    deadline = time.monotonic() + limit
    while (seen := await probe()) != expected:  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{seen!r}, not {expected!r}, after {limit} s"
        await asyncio.sleep(0.02)


async def test_an_idle_subscription_is_pinged_and_stays_up(
    logger: FilteringBoundLogger,
    throwaway_redis: ThrowawayRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pubsub, "KEEPALIVE_SECONDS", 0.1)
    channel = channel_name()
    async with (
        open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link,
        following(link, channel, logger) as followed,
    ):
        assert link.client is not None
        await asyncio.sleep(1.0)  # about ten keepalive PINGs, each answered
        assert followed.ups_and_downs() == [True]
        [ours] = [line for line in await link.client.client_list() if str(line["sub"]) == "1"]
        assert ours["cmd"] == "ping"  # the keepalive's, answered: the subscription is up
        await publish(link.client, channel, "still")
        await until(lambda: followed.messages == ["still"], limit=5)


async def test_a_killed_connection_is_a_down_then_an_up(
    logger: FilteringBoundLogger, throwaway_redis: ThrowawayRedis
) -> None:
    channel = channel_name()
    async with (
        open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link,
        following(link, channel, logger) as followed,
    ):
        assert link.client is not None
        await link.client.client_kill(type_=coredis.PureToken.PUBSUB)
        await until(lambda: followed.ups_and_downs() == [True, False, True], limit=5)
        await publish(link.client, channel, "after")
        await until(lambda: followed.messages == ["after"], limit=5)


async def test_a_stalled_redis_is_found_by_the_keepalive_and_followed_again(
    logger: FilteringBoundLogger,
    throwaway_redis: ThrowawayRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No RST comes from a stopped process, as none comes through a partition: only the
    # keepalive's PING going unanswered tells.
    monkeypatch.setattr(pubsub, "KEEPALIVE_SECONDS", 0.3)
    channel = channel_name()
    async with (
        open_redis(throwaway_redis.url, timeout=0.3, logger=logger) as link,
        following(link, channel, logger) as followed,
    ):
        assert link.client is not None
        assert throwaway_redis.process is not None
        throwaway_redis.process.send_signal(signal.SIGSTOP)
        try:
            found = await until(lambda: not followed.up, limit=3)
        finally:
            throwaway_redis.process.send_signal(signal.SIGCONT)
        assert found < 0.3 + 0.3 + 0.3  # idle for the keepalive, then the PING's timeout
        await until(lambda: followed.up, limit=5)
        await publish(link.client, channel, "after")
        await until(lambda: followed.messages == ["after"], limit=5)
        assert followed.ups_and_downs() == [True, False, True]


async def test_a_restarted_redis_is_resubscribed_with_a_capped_backoff(
    logger: FilteringBoundLogger,
    log_stream: io.BytesIO,
    throwaway_redis: ThrowawayRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tries: list[float] = []
    listen = resp_subscriber.listen

    async def counted(*args: object, **kwargs: object) -> None:
        tries.append(time.monotonic())
        await listen(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pubsub, "listen", counted)
    channel = channel_name()
    async with (
        open_redis(throwaway_redis.url, timeout=0.3, logger=logger) as link,
        following(link, channel, logger) as followed,
    ):
        assert link.client is not None
        throwaway_redis.kill()
        await until(lambda: not followed.up, limit=3)
        down = len(tries)
        await asyncio.sleep(4.0)
        waits = [later - earlier for earlier, later in itertools.pairwise(tries[down - 1 :])]
        # 0.5, 1, 2, 2 s between tries (plus each try's own time): backing off, never more
        # than 2 s apart.
        assert 2 <= len(waits) <= 5, waits
        assert waits == sorted(waits), waits
        assert max(waits) < 2.5, waits
        throwaway_redis.start()  # the same port
        await until(lambda: followed.up, limit=5)
        await publish(link.client, channel, "after")
        await until(lambda: followed.messages == ["after"], limit=5)
        # Each failed try tells down again (the caller covers a gap each time), up once back.
        assert followed.ups_and_downs() == [True] + [False] * (len(tries) - 1) + [True]
    failed = events(log_stream, "test_subscription_failed")
    assert [line["error.message"] for line in failed] == ["ConnectionError"]  # once: then debug


@contextmanager
def own_redis(port: int, *arguments: str) -> Iterator[None]:
    """A redis-server of the test's own, answering on 127.0.0.1:``port`` when entered."""
    process = subprocess.Popen(
        ["redis-server", "--save", "", "--appendonly", "no", "--port", str(port), *arguments],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield
    finally:
        process.kill()
        process.wait(timeout=10)


async def subscriber_line(link: RedisLink, name: str) -> dict[str, str]:
    """CLIENT LIST's line of the connection called ``name`` that subscribes (coredis' own
    connections have the URL's name too)."""
    assert link.client is not None
    lines = [
        {key: str(value) for key, value in line.items()} for line in await link.client.client_list()
    ]
    [line] = [line for line in lines if line.get("name") == name and line.get("sub") != "0"]
    return line


async def test_the_subscription_connects_as_the_client_does(
    logger: FilteringBoundLogger, log_stream: io.BytesIO
) -> None:
    """A user and password, a database, a client name from the URL; TLS with a CA; a Unix
    socket: the subscription uses each, as coredis' client for the same URL does."""
    root = Path(tempfile.mkdtemp(prefix="hotpath-resp-subscriber-"))
    ca = make_certificates(root)
    plain, tls, sock = free_port(), free_port(), root / "redis.sock"
    with own_redis(
        plain,
        *("--bind", "127.0.0.1", "--unixsocket", str(sock)),
        *("--tls-port", str(tls), "--tls-cert-file", str(root / "server.pem")),
        *("--tls-key-file", str(root / "server.key"), "--tls-ca-cert-file", str(ca)),
        *("--tls-auth-clients", "no", "--user", "default", "off"),
        *("--user", "hot", "on", ">s3cret", "~*", "&*", "+@all"),
        *("--user", "deaf", "on", ">s3cret", "~*", "resetchannels", "+@all"),
    ):
        urls = {
            "tcp": f"redis://hot:s3cret@127.0.0.1:{plain}/3?client_name=sub-tcp",
            "tls": f"rediss://hot:s3cret@127.0.0.1:{tls}/2?client_name=sub-tls"
            f"&ssl_ca_certs={ca}&ssl_cert_reqs=required",
            "unix": f"unix://hot:s3cret@{sock}?db=4&client_name=sub-unix",
        }
        databases = {"tcp": "3", "tls": "2", "unix": "4"}
        for kind, url in urls.items():
            channel = channel_name()
            async with (
                open_redis(url, timeout=0.5, logger=logger) as link,
                following(link, channel, logger) as followed,
            ):
                assert link.client is not None, kind
                line = await subscriber_line(link, f"sub-{kind}")
                assert (line["user"], line["db"], line["sub"]) == ("hot", databases[kind], "1")
                await publish(link.client, channel, kind)
                await until(lambda: followed.messages == [kind], limit=5)  # noqa: B023
        # A wrong password, a user that may not subscribe: no subscription, and at once a
        # warning that says why in a word.
        for user in ("hot:wrong", "deaf:s3cret"):
            followed = Followed()
            task = asyncio.create_task(
                follow_channel(
                    cast(RedisLink, _Unentered(f"redis://{user}@127.0.0.1:{plain}/0")),
                    channel_name(),
                    on_message=followed.told.append,
                    on_subscribed=followed.told.append,
                    logger=logger,
                    event="test",
                )
            )
            waited = await until(
                lambda: bool(events(log_stream, "test_subscription_failed")), limit=5
            )
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert waited < 0.4, user  # Redis' error, not the 0.5 s timeout
            assert followed.ups_and_downs() == [False], user  # down, never up
            failed = events(log_stream, "test_subscription_failed")
            assert failed[0]["error.message"] == "RespError", user
            assert "s3cret" not in log_stream.getvalue().decode()
            log_stream.seek(0)
            log_stream.truncate()


class _Unentered:
    """A link whose client is coredis' for ``url``, never entered: only its address is read."""

    def __init__(self, url: str) -> None:
        self.client = make_client(url, timeout=0.5)
        self.timeout = 0.5


def _frames(*values: bytes) -> bytes:
    return b"".join(values)


def _message(channel: bytes, data: bytes) -> bytes:
    return b">3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(data),
        data,
    )


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


async def test_frames_split_anywhere_or_many_in_one_read_parse_the_same() -> None:
    stream = _frames(
        b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
        _message(b"ch", b"1"),
        b"|1\r\n+key\r\n+value\r\n",  # an attribute, then the reply it describes
        b"+PONG\r\n",
        _message(b"ch", "é".encode()),
        _message(b"ch", b"12345678901234567890"),
    )
    for chunk in (1, 2, 3, 7, len(stream)):
        told: list[object] = []
        subscriber = _Subscriber("ch", told.append, functools.partial(told.append, True))
        subscriber.connection_made(_Transport())  # type: ignore[arg-type]
        for at in range(0, len(stream), chunk):
            subscriber.data_received(stream[at : at + chunk])
        assert told == [True, "1", "é", "12345678901234567890"], chunk
        assert subscriber._buffer == b""
        subscriber.close()


def test_resp3_values_parse() -> None:
    assert _parse(b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n_\r\n", 0) == ({"a": 1, b"b": None}, 22)
    assert _parse(b"*2\r\n,1.5\r\n#t\r\n", 0) == ([1.5, True], 14)
    assert _parse(b"=8\r\ntxt:abcd\r\n", 0) == (b"abcd", 14)
    assert _parse(b"$-1\r\n", 0) == (None, 5)
    error = _parse(b"-NOAUTH Authentication required.\r\n", 0)
    assert error is not None
    assert isinstance(error[0], RespError)
    assert isinstance(_parse(b">1\r\n+x\r\n", 0)[0], _Push)  # type: ignore[index]
    assert _parse(b"$5\r\nabc", 0) is None  # incomplete
    assert _parse(b"*2\r\n:1\r\n", 0) is None
    with pytest.raises(ConnectionError):
        _parse(b"?\r\n", 0)
