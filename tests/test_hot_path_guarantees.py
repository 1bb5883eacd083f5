"""Guarantees the fast paths keep: a taken payment is never rolled back; one hand-off thread."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import text

from shop.storage.models import db
from tests.conftest import AcpClient, RecordingSink, cart, join_deliveries, payment


def _completable(acp: AcpClient) -> str:
    created = acp.create(cart(("ebook-single", 1), address=None))
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


def test_a_payment_taken_survives_a_failure_while_answering(make_app, monkeypatch):
    import shop.api.acp as acp_module

    sink = RecordingSink()
    app = make_app(sink=sink)
    acp = AcpClient(app.test_client())
    session_id = _completable(acp)
    real_render = acp_module.render_session

    def broken(state: Any, view: Any) -> Any:
        if view.status == "completed":
            raise RuntimeError("rendering bug after the charge")
        return real_render(state, view)

    monkeypatch.setattr(acp_module, "render_session", broken)
    failed = acp.post(f"/checkout_sessions/{session_id}/complete", payment(), key="pay-once")
    assert failed.status_code == 500
    join_deliveries()
    with app.app_context():
        status, order_id = db.session.execute(
            text("SELECT status, order_id FROM checkout_sessions WHERE id = :id"),
            {"id": session_id},
        ).one()
        records = db.session.execute(
            text("SELECT count(*) FROM idempotency_records WHERE key = 'pay-once'")
        ).scalar_one()
        deliveries = db.session.execute(
            text("SELECT count(*) FROM order_deliveries WHERE session_id = :id"), {"id": session_id}
        ).scalar_one()
    assert (status, order_id) == ("completed", f"order_{session_id}")
    assert records == 0  # an error answer is never stored: a retry runs again
    assert deliveries == 1 and len(sink.orders) == 1
    monkeypatch.setattr(acp_module, "render_session", real_render)
    retried = acp.post(f"/checkout_sessions/{session_id}/complete", payment(), key="pay-once")
    assert retried.status_code == 200
    assert retried.get_json()["order"]["id"] == order_id
    join_deliveries()
    assert len(sink.orders) == 1  # the retry charged and handed over nothing more


class SlowSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def deliver(self, order: dict[str, Any]) -> None:
        self.threads.add(threading.current_thread().name)
        time.sleep(0.1)
        super().deliver(order)


def test_orders_to_a_slow_receiver_share_one_hand_off_thread(make_app):
    sink = SlowSink()
    app = make_app(sink=sink)
    acp = AcpClient(app.test_client())
    most = 0
    for _ in range(6):
        session_id = _completable(acp)
        assert acp.complete(session_id).status_code == 200
        most = max(most, sum(t.name.startswith("deliver-") for t in threading.enumerate()))
    join_deliveries()
    assert most == 1
    assert len(sink.orders) == 6 and len(sink.threads) == 1
