"""A strong peer: ``GET /v1/products/{id}`` on BlackSheep, tuned as its docs recommend and
then some.

BlackSheep with its own JWT bearer authentication (``JWTBearerAuthentication`` with a
symmetric key, HS256, an audience and an issuer as it requires: ``bench`` both) and an
authenticated-user policy on the route, the row encoded with msgspec, asyncpg's pool with a
no-op ``reset=``, no logging middleware, served by the same granian command as hotpath with
its access log off.
``PEER_CACHE_SECONDS`` > 0 keeps each product's encoded answer in process for that long, as
hotpath's warm read does; 0 reads PostgreSQL every time.

Configuration: ``PEER_DATABASE_URL``, ``PEER_JWT_SECRET``, ``PEER_JWT_AUDIENCE``
(``bench``), ``PEER_POOL_SIZE`` (10), ``PEER_CACHE_SECONDS`` (0). Serve with
``granian --interface asgi bench.peers.blacksheep_app:app``; tests call ``create_app``.
"""

from __future__ import annotations

import os

import asyncpg
from blacksheep import Application, Response
from blacksheep.contents import Content
from blacksheep.server.authentication.jwt import JWTBearerAuthentication
from blacksheep.server.authorization import Policy, allow_anonymous, auth
from blacksheep.server.routing import Router
from essentials.secrets import Secret
from guardpost.common import AuthenticatedRequirement

from bench.peers.common import JWT_AUDIENCE, AnswerCache, no_reset, product_json

_JSON = b"application/json"


def create_app(
    database_url: str,
    secret: str,
    *,
    audience: str = JWT_AUDIENCE,
    pool_size: int = 10,
    cache_seconds: float = 0.0,
) -> Application:
    # A router of its own: without one, every Application shares (and resets) the default.
    app = Application(router=Router(), show_error_details=False)
    app.use_authentication().add(
        JWTBearerAuthentication(
            valid_audiences=[audience],
            valid_issuers=[audience],
            secret_key=Secret(secret, direct_value=True),
            algorithms=["HS256"],
            require_kid=False,
        )
    )
    app.use_authorization().add(Policy("authenticated", AuthenticatedRequirement()))
    pools: list[asyncpg.Pool] = []
    cache = AnswerCache(cache_seconds)

    async def start(_: Application) -> None:
        pools.append(
            await asyncpg.create_pool(
                database_url, min_size=pool_size, max_size=pool_size, reset=no_reset
            )
        )

    async def stop(_: Application) -> None:
        if pools:
            await pools.pop().close()

    app.on_start += start
    app.on_stop += stop

    async def load(product_id: int) -> bytes | None:
        return await product_json(pools[0], product_id)

    @auth("authenticated")
    async def read_product(product_id: int) -> Response:
        body = await cache.get(product_id, load)
        if body is None:
            return Response(404)
        return Response(200, content=Content(_JSON, body))

    @allow_anonymous()
    async def livez() -> Response:
        return Response(200, content=Content(_JSON, b'{"status":"ok"}'))

    app.router.add_get("/v1/products/{product_id}", read_product)
    app.router.add_get("/livez", livez)
    return app


def app_from_env() -> Application:
    return create_app(
        os.environ["PEER_DATABASE_URL"],
        os.environ["PEER_JWT_SECRET"],
        audience=os.environ.get("PEER_JWT_AUDIENCE", JWT_AUDIENCE),
        pool_size=int(os.environ.get("PEER_POOL_SIZE", "10")),
        cache_seconds=float(os.environ.get("PEER_CACHE_SECONDS", "0")),
    )
