"""Each commit writes as few SQLite pages as it can (issue 12): every page a transaction
touches is one more WAL frame written, checksummed and later checkpointed while all workers
wait their turn. An UPDATE leaves the indexed buyer columns out when the buyer did not
change (SQLite rewrites an index entry whenever its column is SET, same value or not), and
idempotency records carry no index on created_at: the purge finds the oldest by id."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from shop import clock
from shop.storage import expiry, transaction
from tests.conftest import ADDRESS_CA, AcpClient, cart, payment


@pytest.fixture
def session_updates(monkeypatch) -> list[str]:
    """The SQL of every UPDATE of checkout_sessions written through storage.transaction."""
    seen: list[str] = []
    real = transaction.sql_and_args

    def recording(statement: Any, dialect: Any, params: Any) -> Any:
        sql, args = real(statement, dialect, params)
        if sql.startswith("UPDATE checkout_sessions"):
            seen.append(sql)
        return sql, args

    monkeypatch.setattr(transaction, "sql_and_args", recording)
    return seen


def _buyer_columns(db: Any, session_id: str) -> tuple[Any, Any]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT buyer_email, buyer_phone FROM checkout_sessions WHERE id = ?", (session_id,)
        ).fetchone()
    finally:
        conn.close()


def test_the_buyer_columns_are_written_only_when_the_buyer_changes(
    make_app, shop_files, session_updates
):
    acp = AcpClient(make_app().test_client())
    created = acp.create(cart(address=None)).get_json()
    path = f"/checkout_sessions/{created['id']}"
    assert _buyer_columns(shop_files["db"], created["id"]) == ("jane@example.com", None)

    assert acp.post(path, {"fulfillment_details": {"address": ADDRESS_CA}}).status_code == 200
    assert "buyer_email" not in session_updates[-1]  # same buyer: its index is not touched

    new_buyer = {"email": "Joe@Example.com", "first_name": "Joe", "phone_number": "+1 415-555-0100"}
    assert acp.post(path, {"buyer": new_buyer}).status_code == 200
    assert "buyer_email" in session_updates[-1]
    assert _buyer_columns(shop_files["db"], created["id"]) == ("joe@example.com", "14155550100")

    assert acp.post(path, {"buyer": new_buyer}).status_code == 200  # the same buyer again
    assert "buyer_email" not in session_updates[-1]

    before = len(session_updates)
    assert acp.post(f"{path}/complete", payment()).get_json()["status"] == "completed"
    claim = session_updates[before]  # the claim that reserves the stock, cart unchanged
    assert "status=" in claim and "buyer_email" not in claim
    assert _buyer_columns(shop_files["db"], created["id"]) == ("joe@example.com", "14155550100")


def test_a_paying_buyer_given_at_complete_is_written_with_the_claim(
    make_app, shop_files, session_updates
):
    acp = AcpClient(make_app().test_client())
    created = acp.create().get_json()
    body = {**payment(), "buyer": {"email": "Ann@Example.com", "first_name": "Ann"}}
    completed = acp.post(f"/checkout_sessions/{created['id']}/complete", body).get_json()
    assert completed["status"] == "completed"
    assert any("buyer_email" in sql for sql in session_updates)
    assert _buyer_columns(shop_files["db"], created["id"]) == ("ann@example.com", None)


def _indexes(db: Any) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
            ("idempotency_records",),
        )
        return {name for (name,) in rows}
    finally:
        conn.close()


def test_idempotency_records_lose_the_created_at_index_an_older_version_made(make_app, shop_files):
    make_app()
    assert "ix_idempotency_records_created_at" not in _indexes(shop_files["db"])
    conn = sqlite3.connect(shop_files["db"])  # as the version before issue 12 left the file
    with conn:
        conn.execute(
            "CREATE INDEX ix_idempotency_records_created_at ON idempotency_records (created_at)"
        )
    conn.close()
    acp = AcpClient(make_app().test_client())
    assert "ix_idempotency_records_created_at" not in _indexes(shop_files["db"])
    assert acp.create().status_code == 201


def test_the_purge_deletes_every_record_past_the_window_by_walking_the_oldest_ids(
    make_app, shop_files
):
    app = make_app()
    now = clock.epoch()
    old, young = now - expiry.IDEMPOTENCY_RETENTION_SECONDS - 60, now - 60
    # 2,500 records past the window (more than two batches), with one among them stamped in
    # the future by a clock that was stepped back, then 1,500 inside the window.
    stamps = [old] * 2500 + [young] * 1500
    stamps[9] = now + 3600
    conn = sqlite3.connect(shop_files["db"])
    with conn:
        conn.executemany(
            "INSERT INTO idempotency_records (scope, key, request_hash, state, created_at) "
            "VALUES ('s', ?, 'h', 'done', ?)",
            [(f"k{i}", at) for i, at in enumerate(stamps)],
        )
    conn.close()
    with app.app_context():
        assert expiry.purge_idempotency_records() == 2499
        assert expiry.purge_idempotency_records() == 0
    conn = sqlite3.connect(shop_files["db"])
    left = [at for (at,) in conn.execute("SELECT created_at FROM idempotency_records")]
    conn.close()
    assert sorted(left) == [young] * 1500 + [now + 3600]
