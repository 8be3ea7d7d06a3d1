"""A Lua script run by its SHA1 (EVALSHA), its text sent (EVAL) only when Redis lacks it.

coredis' ``Script`` does the same, but builds three command objects a call (the EVALSHA, a
retry on NOSCRIPT, a transform), each serializing the arguments again: about 15% of a script
call's client CPU (docs/decisions/0015-redis-client.md). Here NOSCRIPT is a plain ``except``,
and the EVAL after it both answers and loads the script on the server that ran it (on a cluster,
the one owning the key's slot), so the next call is an EVALSHA again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from coredis.exceptions import NoScriptError
from coredis.typing import ResponseType

from server.runtime.redis_client import RedisClient


class RedisScript:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        # Redis names a script by the SHA1 of its text; not a security use.
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def run(
        self, client: RedisClient, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> ResponseType:
        try:
            return await client.evalsha(self.sha, keys=keys, args=args)
        except NoScriptError:
            return await client.eval(self.text, keys=keys, args=args)
