"""A product row as hotpath's ``ProductView`` writes it, byte for byte (tests/bench checks)."""

from __future__ import annotations

from typing import Any

import orjson

OPTIONS = orjson.OPT_UTC_Z


def product(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sku": row["sku"],
        "name": row["name"],
        "description": row["description"],
        "category": row["category"],
        "price": {"amount_minor": row["price_minor"], "currency": row["currency"]},
        "stock": row["stock"],
        "in_stock": row["stock"] > 0,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
