"""Sending one webhook request: pinned, checked connections, strict timeouts, a capped read.

Each endpoint gets its own httpx client (connections are reused between its messages, never
shared with another endpoint's host name). Its transport resolves the host itself on every new
connection, checks every address with the UrlGuard and connects to the checked address: the
name is never resolved a second time between the check and the connect. TLS still verifies
the certificate against the URL's host name. Redirects are not followed (a 3xx is a failure),
and proxies from the environment are ignored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

from server.runtime.tracing import outbound_call
from server.webhooks.ssrf import UnsafeUrl, UrlGuard

RESPONSE_CAP = 1024  # bytes of a response kept for the delivery log
_MAX_CLIENTS = 512
USER_AGENT = "hotpath-webhooks/1"


@dataclass(frozen=True, slots=True)
class SendResult:
    started_at: dt.datetime
    latency_ms: int
    outcome: str  # succeeded | failed | blocked
    status: int | None
    error: str | None
    excerpt: str | None
    # The delivery span's ids, with tracing on: what the attempt's log lines name as theirs.
    trace_id: str | None = None
    span_id: str | None = None


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check, then connect to exactly the checked addresses."""

    def __init__(self, guard: UrlGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async with asyncio.timeout(timeout):
            addresses = await self._guard.resolve(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeUrl("Webhooks are not sent over Unix sockets.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, guard: UrlGuard, *, connections: int) -> None:
        super().__init__(trust_env=False, retries=0)
        # httpx builds its pool from options it does not let us extend with a network backend;
        # the same pool, with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=30.0,
            network_backend=_PinnedBackend(guard),
        )


class Sender:
    def __init__(self, guard: UrlGuard, *, timeout: float, connections: int) -> None:
        self.guard = guard
        self.timeout = timeout
        self.connections = connections
        self._clients: OrderedDict[int, httpx.AsyncClient] = OrderedDict()

    def _client(self, endpoint_id: int) -> httpx.AsyncClient:
        client = self._clients.get(endpoint_id)
        if client is None:
            client = httpx.AsyncClient(
                transport=_PinnedTransport(self.guard, connections=self.connections),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                follow_redirects=False,
                trust_env=False,
                headers={"user-agent": USER_AGENT},
            )
            self._clients[endpoint_id] = client
            while len(self._clients) > _MAX_CLIENTS:
                _, oldest = self._clients.popitem(last=False)
                asyncio.get_running_loop().create_task(oldest.aclose())
        else:
            self._clients.move_to_end(endpoint_id)
        return client

    async def send(
        self,
        endpoint_id: int,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        origin: str | None = None,
    ) -> SendResult:
        """``origin``: the traceparent of the request that caused the message, which the
        delivery span links to (a link, not a parent: the delivery is later work)."""
        started_at = dt.datetime.now(dt.UTC)
        started = time.monotonic()
        status: int | None = None
        excerpt: str | None = None
        error: str | None = None
        outcome = "failed"
        ids: tuple[str, str] | None = None
        try:
            self.guard.check_url(url)  # the rules may have changed since the endpoint was made
            # With tracing on: a client span, and its traceparent sent along (an empty dict off).
            with outbound_call("POST", url, origin=origin) as call:
                ids = call.ids()
                async with asyncio.timeout(self.timeout):
                    request = self._client(endpoint_id).stream(
                        "POST", url, content=body, headers={**headers, **call.headers}
                    )
                    async with request as response:
                        status = response.status_code
                        call.answered(status)
                        excerpt = await _read_capped(response)
            if 200 <= status < 300:
                outcome = "succeeded"
            else:
                error = f"HTTP {status}"
        except UnsafeUrl as exc:
            outcome, error = "blocked", str(exc)
        except TimeoutError:
            error = f"no complete answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        latency_ms = round((time.monotonic() - started) * 1000)
        trace_id, span_id = ids or (None, None)
        return SendResult(
            started_at, latency_ms, outcome, status, error, excerpt, trace_id, span_id
        )

    async def forget(self, endpoint_id: int) -> None:
        client = self._clients.pop(endpoint_id, None)
        if client is not None:
            await client.aclose()

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.aclose()


async def _read_capped(response: httpx.Response) -> str:
    """The first RESPONSE_CAP bytes; the rest is not read (the connection is then closed)."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk[: RESPONSE_CAP - len(kept)]
        if len(kept) >= RESPONSE_CAP:
            break
    return kept.decode("utf-8", "replace")
