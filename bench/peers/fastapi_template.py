"""The peer: ``GET /v1/products/{id}`` as the FastAPI full-stack template would write it.

FastAPI, the SQLAlchemy 2 async ORM on asyncpg, pydantic response models, and a
``get_current_user`` dependency that decodes an HS256 JWT and loads the user on every request.
It is deliberately left the way most FastAPI users write it: the thing hotpath is measured
against, not something to tune.

The module reads top to bottom as the template's files do: models, api/deps.py, api/routes,
main.py. Configuration comes from ``PEER_DATABASE_URL`` (postgresql://...), ``PEER_JWT_SECRET`` and
``PEER_POOL_SIZE`` (default 10). Serve it with
``granian --interface asgi bench.peers.fastapi_template:app``; tests call ``create_app``.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from jwt.exceptions import InvalidTokenError
from pydantic import BaseModel, ValidationError
from sqlalchemy import BigInteger, Text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ALGORITHM = "HS256"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str]
    password_hash: Mapped[str]
    display_name: Mapped[str]
    status: Mapped[str]
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sku: Mapped[str]
    name: Mapped[str]
    description: Mapped[str]
    category: Mapped[str]
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str]
    stock: Mapped[int]
    version: Mapped[int]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    deleted_at: Mapped[dt.datetime | None]


class TokenPayload(BaseModel):
    sub: int


class Price(BaseModel):
    amount_minor: int
    currency: str


class ProductPublic(BaseModel):
    id: int
    sku: str
    name: str
    description: str
    category: str
    price: Price
    stock: int
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class Health(BaseModel):
    status: str


reusable_oauth2 = OAuth2PasswordBearer(tokenUrl="/v1/login/access-token")


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    session_factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with session_factory() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_db)]
TokenDep = Annotated[str, Depends(reusable_oauth2)]


async def get_current_user(request: Request, session: SessionDep, token: TokenDep) -> User:
    secret: str = request.app.state.jwt_secret
    try:
        payload = jwt.decode(token, secret, algorithms=[ALGORITHM])
        token_data = TokenPayload.model_validate(payload)
    except (InvalidTokenError, ValidationError) as exc:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail="Could not validate credentials"
        ) from exc
    user = await session.get(User, token_data.sub)
    if not user:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="User not found")
    if not user.is_active:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="Inactive user")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


router = APIRouter()


@router.get("/livez")
async def livez() -> Health:
    return Health(status="ok")


@router.get("/v1/products/{product_id}")
async def read_product(
    session: SessionDep, current_user: CurrentUser, product_id: int
) -> ProductPublic:
    product = await session.get(Product, product_id)
    if not product or product.deleted_at is not None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Product not found")
    return ProductPublic(
        id=product.id,
        sku=product.sku,
        name=product.name,
        description=product.description,
        category=product.category,
        price=Price(amount_minor=product.price_minor, currency=product.currency),
        stock=product.stock,
        version=product.version,
        created_at=product.created_at,
        updated_at=product.updated_at,
    )


def asyncpg_url(database_url: str) -> str:
    """``postgresql://...`` (as hotpath takes it) in the form SQLAlchemy's asyncpg dialect wants."""
    return (
        make_url(database_url)
        .set(drivername="postgresql+asyncpg")
        .render_as_string(hide_password=False)
    )


def create_app(database_url: str, jwt_secret: str, *, pool_size: int = 10) -> FastAPI:
    # max_overflow=0: the pool holds at most pool_size connections, the same cap hotpath's
    # pool gets in a comparison run.
    engine = create_async_engine(asyncpg_url(database_url), pool_size=pool_size, max_overflow=0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(title="peer: fastapi template", lifespan=lifespan)
    app.state.session_factory = async_sessionmaker(engine, expire_on_commit=False)
    app.state.jwt_secret = jwt_secret
    app.include_router(router)
    return app


@functools.cache
def create_app_from_env() -> FastAPI:
    return create_app(
        os.environ["PEER_DATABASE_URL"],
        os.environ["PEER_JWT_SECRET"],
        pool_size=int(os.environ.get("PEER_POOL_SIZE", "10")),
    )


def __getattr__(name: str) -> FastAPI:
    # Built on first access, so granian can serve ``module:app`` while tests import the module
    # without the environment set.
    if name == "app":
        return create_app_from_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
