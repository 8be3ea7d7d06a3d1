"""A realistic demo catalog, loaded with COPY (100,000 products take a few seconds)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator

from server.db.database import Database

COLUMNS = ("sku", "name", "description", "category", "price_minor", "currency", "stock")
_COPY_COLUMNS = (*COLUMNS, "created_at", "updated_at")
# The catalog looks a year old: products were added over it, the newest just now.
CATALOG_AGE = dt.timedelta(days=365)
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


def _created(count: int, seed: int, now: dt.datetime) -> Iterator[dt.datetime]:
    """Ascending with the rows (and so with their ids), one per slot of the year, jittered."""
    # A stream of its own: the rows stay what they were for a given seed.
    rng = random.Random(f"created_at:{seed}")
    slot = CATALOG_AGE / count
    start = now - CATALOG_AGE
    for n in range(count):
        yield start + slot * (n + rng.random())


async def seed_products(
    db: Database, count: int, progress: Callable[[str, int, int], None] | None = None
) -> int:
    """Fill an empty catalog; a catalog with products is left alone. Returns rows added."""
    async with db.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hotpath.seed.products'))")
        if count <= 0 or await conn.fetchval("SELECT EXISTS (SELECT 1 FROM products)"):
            return 0
        now = dt.datetime.now(dt.UTC)
        rows = zip(_rows(count, seed=count), _created(count, seed=count, now=now), strict=True)
        done = 0
        while done < count:
            # Never updated since: updated_at is created_at.
            batch = [(*row, at, at) for _, (row, at) in zip(range(_BATCH), rows, strict=False)]
            await conn.copy_records_to_table("products", records=batch, columns=_COPY_COLUMNS)
            done += len(batch)
            if progress is not None:
                progress("products", done, count)
    return done
