"""The Redis client ``REDIS_URL`` names: one server, or a Redis Cluster.

``redis://``, ``rediss://`` and ``unix://`` are one server (coredis' own URL parsing).
``redis+cluster://[user[:password]@]host:port[,host:port...]`` (``rediss+cluster://`` for TLS)
is a cluster: the nodes listed are where discovery starts, the client learns the rest and
follows the slot map through failovers. A cluster has database 0 only, so no path.

What changes on a cluster, and why hotpath works there unchanged otherwise
(docs/scaling.md):

- Every Lua script is given one key and touches no other (the limiter's GCRA, the product
  cache's SET-IF-NEWER), so each runs whole on the shard that owns that key's slot. No hash
  tag is needed, and none is used: a tag shared by every key would put them all on one shard.
  (On one server the cache sends a write's tombstones in one script of several keys; on a
  cluster, one SET-IF-NEWER per key.)
- Fan-out (revocations, product invalidations and the cache's heartbeats) uses sharded
  pub/sub (SPUBLISH, SSUBSCRIBE): a channel lives on the one shard that owns its slot, so
  every message on it passes through one master, in one order, and each subscriber hears them
  in that order. Classic PUBLISH on a cluster is relayed between nodes over the cluster bus,
  and a process's own heartbeat, published where it subscribes, could then overtake an
  invalidation published earlier elsewhere: the cache's heartbeat voucher
  (server/catalog/cache.py) rests on that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import coredis
from coredis.typing import Node

RedisClient = coredis.Redis[str] | coredis.RedisCluster[str]
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class ClusterAddress:
    nodes: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterAddress:
    """ValueError, whose text never holds the URL (it may hold a password), when malformed."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        raise ValueError("not a redis+cluster:// or rediss+cluster:// URL")
    parts = urlsplit("//" + rest)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    if parts.path not in ("", "/"):
        raise ValueError("a cluster URL names no database (a cluster has database 0 only)")
    query = parse_qs(parts.query)
    if set(query) - {"ssl_ca_certs"}:
        raise ValueError("the only query parameter a cluster URL takes is ssl_ca_certs")
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("each cluster node must be host:port")
        nodes.append((host.strip("[]"), int(port)))
    return ClusterAddress(
        nodes=tuple(nodes),
        tls=scheme == "rediss+cluster",
        username=unquote(username) or None,
        password=unquote(password) or None,
        ca_certs=query.get("ssl_ca_certs", [None])[0],
    )


def make_client(url: str, *, timeout: float) -> RedisClient:
    """A client (not yet entered: coredis wants ``async with``) for ``url``.

    ``stream_timeout`` stays although every call site has its own ``asyncio.timeout``: pub/sub's
    keepalive PING waits on it alone, and without it a stalled Redis would never fail a
    subscription. ``verify_version=False``: no check, before each command, of the server's
    version against the command's (hotpath needs Redis 7, whose SPUBLISH it uses anyway); 1%
    of a command's client instructions. Decision 0015 records what else was measured.
    """
    if not is_cluster_url(url):
        return coredis.Redis.from_url(
            url,
            decode_responses=True,
            connect_timeout=timeout,
            stream_timeout=timeout,
            verify_version=False,
        )
    address = parse_cluster_url(url)
    return coredis.RedisCluster(
        startup_nodes=[Node(host=host, port=port) for host, port in address.nodes],
        username=address.username,
        password=address.password,
        ssl=address.tls,
        ssl_ca_certs=address.ca_certs,
        decode_responses=True,
        connect_timeout=timeout,
        stream_timeout=timeout,
        verify_version=False,
    )
