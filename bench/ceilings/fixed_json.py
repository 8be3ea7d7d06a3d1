"""Ceiling 1: the least an ASGI app on granian can do per request, fixed JSON from a raw callable.

Every scenario of the suite is reported against this or the primary-key lookup ceiling.
"""

from __future__ import annotations

from typing import Any

import orjson

_BODY = orjson.dumps({"status": "ok"})
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_BODY)).encode()),
    ],
}
_RESPONSE = {"type": "http.response.body", "body": _BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(_START)
    await send(_RESPONSE)
