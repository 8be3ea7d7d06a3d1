"""A realistic demo catalog, loaded with COPY (100,000 products take a few seconds)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from server.db import Database

COLUMNS = ("sku", "name", "description", "category", "price_minor", "currency", "stock")
CATEGORIES = ("tools", "garden", "kitchen", "office", "outdoor", "lighting", "storage", "audio")
_ADJECTIVES = (
    "Compact",
    "Heavy-duty",
    "Classic",
    "Ergonomic",
    "Foldable",
    "Wireless",
    "Stainless",
    "Bamboo",
    "Vintage",
    "Modular",
    "Portable",
    "Premium",
)
_MATERIALS = ("steel", "oak", "copper", "linen", "ceramic", "carbon", "walnut", "glass")
_NOUNS = (
    "hammer",
    "lamp",
    "kettle",
    "shelf",
    "speaker",
    "planter",
    "desk",
    "chair",
    "toolbox",
    "lantern",
    "grinder",
    "organizer",
    "bench",
    "clock",
    "rack",
)
_BATCH = 10_000


def _rows(count: int, seed: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(seed)
    for n in range(1, count + 1):
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_MATERIALS)} {rng.choice(_NOUNS)}"
        # Prices spread like a real shop's: most under 100, a long tail up to a few thousand.
        price = int(rng.lognormvariate(8.0, 1.0)) // 10 * 10 + 99
        stock = 0 if rng.random() < 0.1 else rng.randint(1, 500)
        yield (
            f"DEMO-{n:07d}",
            f"{name} {n}",
            f"A {name.lower()} for everyday use.",
            rng.choice(CATEGORIES),
            price,
            "EUR",
            stock,
        )


async def seed_products(
    db: Database, count: int, progress: Callable[[str, int, int], None] | None = None
) -> int:
    """Fill an empty catalog; a catalog with products is left alone. Returns rows added."""
    async with db.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hotpath.seed.products'))")
        if count <= 0 or await conn.fetchval("SELECT EXISTS (SELECT 1 FROM products)"):
            return 0
        rows = _rows(count, seed=count)
        done = 0
        while done < count:
            batch = [row for _, row in zip(range(_BATCH), rows, strict=False)]
            await conn.copy_records_to_table("products", records=batch, columns=COLUMNS)
            done += len(batch)
            if progress is not None:
                progress("products", done, count)
    return done
