"""server/runtime/resp_commands.py, the tombstones' command connection, on real Redis: replies
matched to their commands in order, an error reply that is its command's alone, the connection
made as coredis' client for the same URL is (user, database, name, TLS, Unix socket), and what
must close it: a killed connection, a stalled Redis whose late reply must not be taken for the
next command's, a restart; and nothing left behind when the link closes. The shared Redis for
the normal cases, one of the test's own for the rest."""

from __future__ import annotations

import asyncio
import secrets
import signal
import tempfile
from pathlib import Path

import coredis
import pytest
from structlog.typing import FilteringBoundLogger

from server.runtime.redis_link import RedisLink, open_redis
from server.runtime.resp import RespError
from server.runtime.resp_commands import RespCommands
from tests.fixtures.databases import REDIS_URL
from tests.fixtures.faults import signal_redis
from tests.fixtures.redis_cluster import make_certificates
from tests.fixtures.support import ThrowawayRedis, free_port
from tests.runtime.test_resp_subscriber import own_redis


def commands_of(link: RedisLink) -> RespCommands:
    assert link.client is not None
    assert link.commands is not None
    return link.commands


async def client_ids(link: RedisLink) -> set[int]:
    assert link.client is not None
    return {int(line["id"]) for line in await link.client.client_list()}


async def test_replies_come_back_to_their_commands_in_order(logger: FilteringBoundLogger) -> None:
    async with open_redis(REDIS_URL, timeout=0.5, logger=logger) as link:
        commands = commands_of(link)
        sent = [secrets.token_hex(4) for _ in range(300)]
        replies = await asyncio.gather(*(commands.execute(b"ECHO", text) for text in sent))
        assert replies == [text.encode() for text in sent]
        key = f"test:resp-commands:{secrets.token_hex(4)}"
        script = b"return redis.call('INCRBY', KEYS[1], ARGV[1])"
        try:
            assert await commands.execute(b"EVAL", script, "1", key, "5") == 5
            assert await commands.execute(b"EVAL", script, "1", key, "2") == 7
        finally:
            assert link.client is not None
            await link.client.delete([key])


async def test_an_error_reply_is_its_commands_and_keeps_the_connection(
    logger: FilteringBoundLogger,
) -> None:
    async with open_redis(REDIS_URL, timeout=0.5, logger=logger) as link:
        commands = commands_of(link)
        ours = await commands.execute(b"CLIENT", b"ID")
        bad = b"return redis.call('NO-SUCH-COMMAND')"
        replies = await asyncio.gather(
            commands.execute(b"ECHO", b"before"),
            commands.execute(b"EVAL", bad, b"0"),
            commands.execute(b"ECHO", b"after"),
            return_exceptions=True,
        )
        assert replies[0] == b"before"
        assert isinstance(replies[1], RespError)
        assert replies[2] == b"after"
        assert await commands.execute(b"CLIENT", b"ID") == ours  # the same connection


async def test_the_connection_is_made_as_the_client_does(logger: FilteringBoundLogger) -> None:
    """A user and password, a database, a client name from the URL; TLS with a CA; a Unix
    socket: as the subscription's reader (server/runtime/resp.py)."""
    root = Path(tempfile.mkdtemp(prefix="hotpath-resp-commands-"))
    ca = make_certificates(root)
    plain, tls, sock = free_port(), free_port(), root / "redis.sock"
    with own_redis(
        plain,
        *("--bind", "127.0.0.1", "--unixsocket", str(sock)),
        *("--tls-port", str(tls), "--tls-cert-file", str(root / "server.pem")),
        *("--tls-key-file", str(root / "server.key"), "--tls-ca-cert-file", str(ca)),
        *("--tls-auth-clients", "no", "--user", "default", "off"),
        *("--user", "hot", "on", ">s3cret", "~*", "&*", "+@all"),
    ):
        urls = {
            "tcp": f"redis://hot:s3cret@127.0.0.1:{plain}/3?client_name=cmd-tcp",
            "tls": f"rediss://hot:s3cret@127.0.0.1:{tls}/2?client_name=cmd-tls"
            f"&ssl_ca_certs={ca}&ssl_cert_reqs=required",
            "unix": f"unix://hot:s3cret@{sock}?db=4&client_name=cmd-unix",
        }
        databases = {"tcp": "3", "tls": "2", "unix": "4"}
        for kind, url in urls.items():
            async with open_redis(url, timeout=0.5, logger=logger) as link:
                info = await commands_of(link).execute(b"CLIENT", b"INFO")
                assert isinstance(info, bytes), kind
                fields = dict(part.split("=", 1) for part in info.decode().split())
                assert (fields["user"], fields["db"], fields["name"]) == (
                    "hot",
                    databases[kind],
                    f"cmd-{kind}",
                ), kind
                assert fields["resp"] == "3", kind
                # What a key written there is, coredis' client reads: the same database.
                key = f"test:resp-commands:{kind}"
                await commands_of(link).execute(b"SET", key, kind)
                assert link.client is not None
                assert await link.client.get(key) == kind


async def test_a_killed_connection_fails_its_commands_and_the_next_reconnects(
    logger: FilteringBoundLogger, throwaway_redis: ThrowawayRedis
) -> None:
    async with open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link:
        commands = commands_of(link)
        ours = await commands.execute(b"CLIENT", b"ID")
        assert isinstance(ours, int)
        # Two commands waiting in Redis (BLPOP on keys nobody pushes to) when it is killed.
        waiting = [
            asyncio.ensure_future(commands.execute(b"BLPOP", f"nothing:{n}", b"5"))
            for n in range(2)
        ]
        await asyncio.sleep(0.2)
        assert link.client is not None
        assert await link.client.client_kill(identifier=ours)
        for command in waiting:
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(command, 1.0)
        again = await commands.execute(b"CLIENT", b"ID")
        assert again != ours
        assert await commands.execute(b"ECHO", b"after") == b"after"


async def test_a_late_reply_after_a_timeout_is_never_taken_for_the_next_commands(
    logger: FilteringBoundLogger, throwaway_redis: ThrowawayRedis
) -> None:
    async with open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link:
        commands = commands_of(link)
        ours = await commands.execute(b"CLIENT", b"ID")
        signal_redis(throwaway_redis, signal.SIGSTOP)
        try:
            other = asyncio.ensure_future(commands.execute(b"ECHO", b"other"))
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await commands.execute(b"ECHO", b"late")
            # The timeout closed the connection: the command sent with it fails too.
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(other, 1.0)
        finally:
            signal_redis(throwaway_redis, signal.SIGCONT)
        # Redis now reads and answers "late" and "other", on a socket no longer read.
        for text in (b"next", b"and-next"):
            assert await commands.execute(b"ECHO", text) == text
        assert await commands.execute(b"CLIENT", b"ID") != ours
        assert ours not in await client_ids(link)  # the old socket is gone from Redis too


async def test_a_restarted_redis_is_connected_again_by_the_next_command(
    logger: FilteringBoundLogger, throwaway_redis: ThrowawayRedis
) -> None:
    async with open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link:
        commands = commands_of(link)
        assert await commands.execute(b"ECHO", b"before") == b"before"
        throwaway_redis.kill()
        for _ in range(3):  # each try fails at once (refused), within the caller's timeout
            with pytest.raises(ConnectionError):
                async with asyncio.timeout(0.5):
                    await commands.execute(b"ECHO", b"down")
        await asyncio.to_thread(throwaway_redis.start)  # the same port, empty
        async with asyncio.timeout(0.5):
            assert await commands.execute(b"ECHO", b"after") == b"after"


async def test_the_link_closing_leaves_no_task_and_no_connection(
    logger: FilteringBoundLogger,
) -> None:
    observer = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
    async with observer:
        async with open_redis(REDIS_URL, timeout=0.5, logger=logger) as link:
            commands = commands_of(link)
            before = asyncio.all_tasks()
            ours = await commands.execute(b"CLIENT", b"ID")
            assert asyncio.all_tasks() == before  # a command (and its connect) starts no task
            assert ours in {int(line["id"]) for line in await observer.client_list()}
        assert link.commands is None
        with pytest.raises(ConnectionError):
            await commands.execute(b"PING")  # closed for good: no connection made again
        # Aborted at once, not left to the garbage collector: Redis sees it go.
        for _ in range(100):
            if ours not in {int(line["id"]) for line in await observer.client_list()}:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the command connection is still open")


async def test_closing_while_connecting_leaves_no_connection(
    logger: FilteringBoundLogger, throwaway_redis: ThrowawayRedis
) -> None:
    async with open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link:
        commands = commands_of(link)
        signal_redis(throwaway_redis, signal.SIGSTOP)  # the kernel accepts; HELLO waits
        try:
            connecting = asyncio.ensure_future(commands.execute(b"PING"))
            await asyncio.sleep(0.1)
            commands.close()
            with pytest.raises(ConnectionError):  # at once, not the handshake's 0.5 s timeout
                await asyncio.wait_for(connecting, 0.2)
        finally:
            signal_redis(throwaway_redis, signal.SIGCONT)
        with pytest.raises(ConnectionError):
            await commands.execute(b"PING")
