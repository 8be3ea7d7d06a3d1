"""Property test of the order state machine: random sequences of cancel/fulfil by the owner,
staff and a stranger (some of them sent concurrently) against a tiny model.

Model: placed -> fulfilled (staff only) or placed -> cancelled (owner or staff); anything else
is a 409; fulfilling without orders:write_all is a 403; a stranger cancelling gets a 404; a
cancel restocks exactly once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import HotpathApp
from server.web.state import app_container
from tests.fixtures.identity import Accounts, Tokens
from tests.fixtures.orders import new_product, order

ACTORS = ("owner", "staff", "stranger")
ACTIONS = ("cancel", "fulfil")
STOCK = 20

Step = tuple[str, str]
# A step is one request, or (as a list of two or three) requests sent at the same time.
steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(ACTORS), st.sampled_from(ACTIONS)).map(lambda s: [s]),
        st.lists(
            st.tuples(st.sampled_from(("owner", "staff")), st.sampled_from(ACTIONS)),
            min_size=2,
            max_size=3,
        ),
    ),
    min_size=1,
    max_size=6,
)


@dataclass
class Model:
    quantity: int
    status: str = "placed"
    stock: int = STOCK
    events: list[str] = field(default_factory=lambda: ["order.placed"])

    def allowed(self, actor: str, action: str) -> int:
        """The status code of one request, given the state before it."""
        if action == "fulfil" and actor != "staff":
            return 403  # the route itself needs orders:write_all
        if actor == "stranger":
            return 404  # someone else's order does not exist for a customer
        return 200 if self.status == "placed" else 409

    def apply(self, action: str) -> None:
        self.status = "cancelled" if action == "cancel" else "fulfilled"
        self.events.append(f"order.{self.status}")
        if action == "cancel":
            self.stock += self.quantity


@dataclass
class World:
    http: httpx.AsyncClient
    app: HotpathApp
    staff: Tokens
    actors: dict[str, Tokens]
    counter: list[int] = field(default_factory=lambda: [0])


async def send(world: World, actor: str, action: str, order_id: int) -> httpx.Response:
    return await world.http.post(
        f"/v1/orders/{order_id}/{action}", headers=world.actors[actor].headers
    )


async def run_case(world: World, quantity: int, sequence: list[list[Step]]) -> None:
    product = await new_product(world.http, world.staff, stock=STOCK)
    world.counter[0] += 1
    placed = await order(
        world.http,
        world.actors["owner"],
        f"sm-{product}-{world.counter[0]}",
        [{"product_id": product, "quantity": quantity}],
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    model = Model(quantity, stock=STOCK - quantity)
    for step in sequence:
        before = model.status
        responses = await asyncio.gather(*(send(world, a, act, order_id) for a, act in step))
        codes = [r.status_code for r in responses]
        if len(step) == 1:
            (actor, action), (code,) = step[0], codes
            assert code == model.allowed(actor, action), (step, code, responses[0].text)
            if code == 200:
                model.apply(action)
                assert responses[0].json()["status"] == model.status
            continue
        # Concurrent requests: each is judged against the state before the step; at most one
        # of those that could move the order does, and whichever it was decides the outcome.
        expected = [model.allowed(a, act) for a, act in step]
        winners = [i for i, code in enumerate(codes) if code == 200]
        for i, (code, wanted) in enumerate(zip(codes, expected, strict=True)):
            if wanted == 200:
                assert code in (200, 409), (step, codes, responses[i].text)
            else:
                assert code == wanted, (step, codes, responses[i].text)
        if before == "placed" and 200 in expected:
            assert len(winners) == 1, (step, codes)
            model.apply(step[winners[0]][1])
        else:
            assert winners == [], (step, codes)

    final = await world.http.get(f"/v1/orders/{order_id}", headers=world.staff.headers)
    assert final.json()["status"] == model.status
    async with app_container(world.app).db.connection() as conn:
        stock = await conn.fetchval("SELECT stock FROM products WHERE id = $1", product)
        topics = await conn.fetch(
            "SELECT topic FROM outbox WHERE aggregate_type = 'order' AND aggregate_id = $1"
            " ORDER BY id",
            str(order_id),
        )
    assert stock == model.stock, (sequence, model)
    assert [r["topic"] for r in topics] == model.events
    public = await world.http.get(f"/v1/products/{product}")
    assert public.json()["stock"] == model.stock  # the product cache saw the restock too


async def test_state_machine_follows_the_model(
    http: httpx.AsyncClient, app: HotpathApp, accounts: Accounts
) -> None:
    _, staff = await accounts.create_and_login("staff")
    _, owner = await accounts.create_and_login("customer")
    _, stranger = await accounts.create_and_login("customer")
    world = World(http, app, staff, {"owner": owner, "staff": staff, "stranger": stranger})

    @settings(
        max_examples=20,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(quantity=st.integers(min_value=1, max_value=STOCK), sequence=steps)
    def check(quantity: int, sequence: list[list[Step]]) -> None:
        future = asyncio.run_coroutine_threadsafe(run_case(world, quantity, sequence), loop)
        future.result(timeout=60)

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(check)
