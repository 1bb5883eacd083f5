"""shop.transaction: the thread's own SQLite transaction, the Session it joins, and its hooks."""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import select, text, update

from shop.storage import transaction
from shop.storage.connections import database, read
from shop.storage.models import CheckoutSession, StockLevel, db
from tests.conftest import ADDRESS_CA, cart
from tests.psp_app import wait_for

_QTY = select(StockLevel.qty).where(StockLevel.item_id == "widget")


def _qty() -> int:
    return read(_QTY)[0].qty


def _set_widget(qty: int) -> None:
    transaction.execute(update(StockLevel).where(StockLevel.item_id == "widget").values(qty=qty))


def test_a_transaction_commits_its_writes_then_runs_the_commit_hooks(app):
    seen: list[int] = []
    hook = transaction.on_commit(lambda: seen.append(_qty()))
    try:
        with app.app_context():
            _set_widget(41)
            assert transaction.active()
            assert _qty() != 41  # not committed yet: a reader sees the last commit
            transaction.commit()
            assert not transaction.active()
            assert _qty() == 41
        assert seen == [41]  # the hook ran after the commit, and saw it
    finally:
        transaction._COMMIT_HOOKS.remove(hook)


def test_a_rollback_undoes_every_write_and_runs_the_rollback_hooks(app):
    rolled: list[bool] = []
    hook = transaction.on_rollback(lambda: rolled.append(True))
    try:
        with app.app_context():
            before = _qty()
            _set_widget(7)
            transaction.info()["note"] = "kept until reset"
            transaction.rollback()
            assert _qty() == before
            assert rolled == [True]
            assert transaction.info() == {"note": "kept until reset"}
            transaction.reset()
            assert transaction.info() == {}
    finally:
        transaction._ROLLBACK_HOOKS.remove(hook)


def test_a_savepoint_rolls_back_only_what_came_after_it(app):
    with app.app_context():
        _set_widget(30)
        with transaction.savepoint() as roll_back:
            _set_widget(20)
            roll_back()
        assert transaction.execute(_QTY).scalar_one() == 30
        with transaction.savepoint():
            _set_widget(25)
        transaction.commit()
        assert _qty() == 25


def test_results_answer_like_sqlalchemy_results(app):
    with app.app_context():
        rows = transaction.execute(
            select(StockLevel.item_id, StockLevel.qty).order_by(StockLevel.item_id)
        )
        listed = rows.all()
        assert listed and listed[0].item_id == listed[0][0]
        ids = transaction.execute(select(StockLevel.item_id).order_by(StockLevel.item_id))
        assert ids.scalars().all() == [row.item_id for row in listed]
        none = transaction.execute(select(StockLevel.qty).where(StockLevel.item_id == "nope"))
        assert none.scalar_one_or_none() is None
        assert transaction.execute(text("SELECT 1 AS one")).one().one == 1
        assert transaction.execute(_QTY).first().qty == _qty()
        transaction.rollback()


def test_an_orm_transaction_begun_first_is_joined(app):
    """A Session transaction already open in the thread takes every statement, and the commit."""
    with app.app_context():
        db.session.get(CheckoutSession, "cs_none")  # the ORM begins the transaction
        _set_widget(12)
        assert transaction.active()
        transaction.commit()
        assert not db.session().in_transaction()
        assert _qty() == 12


def test_a_session_transaction_is_seen_from_begin_to_end_whatever_ends_it(app, make_app):
    """active() skips the Session lookups while no Session anywhere holds a transaction."""

    def begin() -> None:
        db.session.get(CheckoutSession, "cs_none")

    def nested() -> None:
        begin()
        db.session.begin_nested().commit()

    other = make_app()
    with app.app_context():
        for start, end in [
            (begin, db.session.commit),
            (begin, db.session.rollback),
            (begin, db.session.close),
            (begin, db.session.remove),
            (nested, db.session.commit),
        ]:
            assert not transaction.active()
            start()
            assert transaction.active()
            with other.app_context():  # another app's context: its own Session, none open
                assert not transaction.active()
            end()
            assert not transaction.active()
            assert not db.session().in_transaction()
            assert not transaction._SESSIONS_IN_TRANSACTION  # the next check is the quick one


def test_the_orm_cannot_begin_inside_our_transaction_and_says_so_at_once(app):
    """It would wait for the writer queue this thread holds: a clear error, not a hang."""
    with app.app_context():
        _set_widget(3)
        started = time.monotonic()
        with pytest.raises(Exception, match="ORM Session began a transaction"):
            db.session.get(CheckoutSession, "cs_none")
        assert time.monotonic() - started < 1
        transaction.rollback()
        db.session.rollback()


def test_threads_take_turns_and_never_see_each_others_open_writes(app):
    """Two threads' transactions: the second waits for the first's commit, then applies on it."""
    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with app.app_context():
            transaction.execute(text("UPDATE stock_levels SET qty = 100 WHERE item_id = 'widget'"))
            holding.set()
            release.wait(5)
            order.append("first commits")
            transaction.commit()

    def second() -> None:
        with app.app_context():
            holding.wait(5)
            transaction.execute(
                text("UPDATE stock_levels SET qty = qty + 1 WHERE item_id = 'widget'")
            )
            order.append("second wrote")
            transaction.commit()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    holding.wait(5)
    time.sleep(0.2)  # the second thread is waiting for its turn by now
    assert order == []
    release.set()
    for thread in threads:
        thread.join(10)
    with app.app_context():
        assert order == ["first commits", "second wrote"]
        assert _qty() == 101


def test_a_request_that_fails_leaves_no_transaction_open(app, client):
    """Teardown rolls back whatever a request left open, so the next one gets the lock."""

    @app.get("/test-leaves-open")
    def leaves_open() -> str:
        _set_widget(1)
        raise RuntimeError("boom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    before = None
    with app.app_context():
        before = _qty()
    assert client.get("/test-leaves-open").status_code == 500
    with app.app_context():
        assert _qty() == before
        _set_widget(before)
        transaction.commit()


# ---------------------------------------------------------------- the Session path


@pytest.fixture
def session_mode(monkeypatch):
    """Run the app as on a database other than an SQLite file: the Session does everything."""
    monkeypatch.setattr(transaction, "_own_database", lambda: None)


def test_the_whole_checkout_works_the_same_through_the_session(session_mode, acp, app):
    created = acp.create(cart(address=None)).get_json()
    assert created["status"] == "not_ready_for_payment"
    updated = acp.post(
        f"/checkout_sessions/{created['id']}",
        {"fulfillment_details": {"name": "Jane Doe", "address": ADDRESS_CA}},
    ).get_json()
    assert updated["status"] == "ready_for_payment"
    declined = acp.complete(created["id"], "tok_chargeDeclined").get_json()
    assert declined["status"] == "ready_for_payment"
    key = "same-key"
    first = acp.complete(created["id"], key=key)
    again = acp.complete(created["id"], key=key)
    assert first.get_json()["status"] == "completed"
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_data() == first.get_data()
    sink = app.extensions["shop"].sink
    [order] = wait_for(lambda: sink.orders)
    assert order["order"]["id"] == first.get_json()["order"]["id"]
    other = acp.create().get_json()
    canceled = acp.post(f"/checkout_sessions/{other['id']}/cancel", {}).get_json()
    assert canceled["status"] == "canceled"


def test_a_savepoint_works_the_same_through_the_session(session_mode, app):
    with app.app_context():
        _set_widget(30)
        with transaction.savepoint() as roll_back:
            _set_widget(20)
            roll_back()
        with transaction.savepoint():
            _set_widget(31)
        transaction.commit()
        assert _qty() == 31


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connections(app):
    """SQLite connections must not cross a fork: a gunicorn worker opens its own."""
    with app.app_context():
        bound = database()
        inherited = (bound.reader(), bound.writer())
        before = _qty()
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code only
            code = 1
            try:
                own = (bound.reader(), bound.writer())
                fresh = all(mine is not theirs for mine, theirs in zip(own, inherited, strict=True))
                _set_widget(before + 1)
                transaction.commit()
                code = 0 if fresh and _qty() == before + 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert (bound.reader(), bound.writer()) == inherited  # the parent keeps its own
        assert _qty() == before + 1
        _set_widget(before)
        transaction.commit()
