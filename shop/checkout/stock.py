"""Stock counters: seeded from products.json, reserved and released with atomic UPDATEs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text

from shop import metrics
from shop.config.catalog import Catalog
from shop.storage import read, transaction
from shop.storage.transaction import write

_RESERVE = text("UPDATE stock_levels SET qty = qty - :n WHERE item_id = :id AND qty >= :n")
_LEVELS = text("SELECT item_id, qty FROM stock_levels")
_RELEASE = text("UPDATE stock_levels SET qty = qty + :n WHERE item_id = :id")
_SEED = text(
    "INSERT INTO stock_levels (item_id, qty, file_inventory) VALUES (:id, :n, :n) "
    "ON CONFLICT (item_id) DO NOTHING"
)
_RESTOCK = text(
    "UPDATE stock_levels SET qty = :n, file_inventory = :n "
    "WHERE item_id = :id AND file_inventory <> :n"
)


def seed_stock(catalog: Catalog) -> list[str]:
    """Create missing counters; reset those whose products.json number changed.

    Return the restocked ids.
    """
    restocked = []
    for item in catalog.items.values():
        if item.inventory is None:
            continue
        params = {"id": item.id, "n": item.inventory}
        transaction.execute(_SEED, params)
        if transaction.execute(_RESTOCK, params).rowcount:
            restocked.append(item.id)
    transaction.commit()
    return restocked


def _merged(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for item_id, qty in lines:
        merged[item_id] = merged.get(item_id, 0) + qty
    return merged


def reserve_stock(catalog: Catalog, lines: Iterable[tuple[str, int]]) -> str | None:
    """Take stock for every (item_id, qty) in the current transaction.

    Returns None when all were reserved, else the first item id that lacked stock; the caller
    must then roll back so nothing stays reserved.
    """
    for item_id, qty in _merged(lines).items():
        item = catalog.item(item_id)
        if item is None or item.inventory is None:
            continue
        if write(_RESERVE, {"id": item_id, "n": qty}) != 1:
            metrics.STOCK_OUTS.labels(item=item_id).inc()
            return item_id
    return None


def release_stock(catalog: Catalog, lines: Iterable[tuple[str, int]]) -> None:
    """Give reserved stock back, in the current transaction."""
    for item_id, qty in _merged(lines).items():
        item = catalog.item(item_id)
        if item is None or item.inventory is None:
            continue
        write(_RELEASE, {"id": item_id, "n": qty})


def available_quantities(catalog: Catalog) -> dict[str, int | None]:
    """Return live counts by item id; None means unlimited.

    Read outside the caller's transaction (shop.storage.read): the counts only inform, and the
    reservation that matters is the conditional UPDATE in reserve_stock.
    """
    rows = dict(read(_LEVELS))
    return {
        item.id: None if item.inventory is None else int(rows.get(item.id, 0))
        for item in catalog.items.values()
    }


def set_stock(item_id: str, qty: int) -> bool:
    """Set one counter by hand (the `stock` command). Return False when there is no counter."""
    result = transaction.execute(
        text("UPDATE stock_levels SET qty = :n WHERE item_id = :id"), {"id": item_id, "n": qty}
    )
    transaction.commit()
    return result.rowcount == 1
