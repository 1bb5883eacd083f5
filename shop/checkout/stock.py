"""Stock counters: seeded from products.json, reserved and released with atomic UPDATEs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

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


# A cart's assessment (create, update, get, and complete before its reservation) only informs:
# the reservation's conditional UPDATE decides. A count this process read less than
# TRUST_SECONDS ago that was at least PLENTY above what the cart wants cannot have fallen short
# since unless PLENTY units sold within that second, so that read answers the assessment again
# instead of a new SELECT (one fewer per request on a store with stock to spare; issue 12).
# Nearly sold-out items are read afresh every time. This process's own reservations are
# subtracted from its read (it knows them exactly; other workers' sales within the second are
# what PLENTY covers); a shortage, a release, a restock or a count set by hand forgets it.
PLENTY = 1000
TRUST_SECONDS = 1.0
_RECENT: dict[int, tuple[Catalog, float, dict[str, int | None]]] = {}  # id(catalog) -> read


def availability_for(catalog: Catalog, wanted: Mapping[str, int]) -> dict[str, int | None]:
    """Counts to assess a cart wanting `wanted` (item id -> quantity) against; None: unlimited."""
    now = time.monotonic()
    hit = _RECENT.get(id(catalog))
    if hit is not None and now - hit[1] < TRUST_SECONDS:  # the id is the catalog's: it is held
        levels = hit[2]
        if all(_plenty(levels.get(item_id), qty) for item_id, qty in wanted.items()):
            return levels
    levels = available_quantities(catalog)
    if len(_RECENT) >= 8:  # one catalog per app; tests make many apps
        _RECENT.clear()
    _RECENT[id(catalog)] = (catalog, now, levels)
    return levels


def _plenty(left: int | None, wanted: int) -> bool:
    return left is None or left >= wanted + PLENTY


def _forget_reads() -> None:
    _RECENT.clear()


def _taken_here(taken: Mapping[str, int]) -> None:
    """Subtract a reservation of this process from its recent reads."""
    for key, (catalog, at, levels) in list(_RECENT.items()):
        left = {i: None if n is None else n - taken.get(i, 0) for i, n in levels.items()}
        _RECENT[key] = (catalog, at, left)


def seed_stock(catalog: Catalog) -> list[str]:
    """Create missing counters; reset those whose products.json number changed.

    Return the restocked ids.
    """
    _forget_reads()
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
    merged = _merged(lines)
    for item_id, qty in merged.items():
        item = catalog.item(item_id)
        if item is None or item.inventory is None:
            continue
        if write(_RESERVE, {"id": item_id, "n": qty}) != 1:
            _forget_reads()
            metrics.STOCK_OUTS.labels(item=item_id).inc()
            return item_id
    _taken_here(merged)  # before the commit: a rollback leaves the read lower, never higher
    return None


def release_stock(catalog: Catalog, lines: Iterable[tuple[str, int]]) -> None:
    """Give reserved stock back, in the current transaction."""
    _forget_reads()
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
    _forget_reads()
    result = transaction.execute(
        text("UPDATE stock_levels SET qty = :n WHERE item_id = :id"), {"id": item_id, "n": qty}
    )
    transaction.commit()
    return result.rowcount == 1
