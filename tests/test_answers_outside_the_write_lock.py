"""create, update and complete render their answer while no write transaction is open: every
worker's writes queue behind that lock, so the time spent inside it caps how much of the
CPUs the store can use (docs/decisions.md, issue 12)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from shop.api import acp as acp_module
from shop.storage import transaction
from tests.conftest import cart


def test_create_update_and_complete_render_outside_the_transaction(acp, monkeypatch):
    rendered: list[bool] = []
    real = acp_module.render_session

    def recording(state: Any, view: Any) -> Any:
        rendered.append(transaction.active())
        return real(state, view)

    monkeypatch.setattr(acp_module, "render_session", recording)
    created = acp.create(cart(("widget", 1)))
    assert created.status_code == 201
    session_id = created.get_json()["id"]
    assert _update(acp, session_id, "j@example.com").status_code == 200
    done = acp.complete(session_id).get_json()
    assert done["status"] == "completed"
    # One rendering per answer, none of them with the write transaction (and its lock) open.
    assert rendered == [False, False, False]


def _update(acp: Any, session_id: str, email: str) -> Any:
    return acp.post(f"/checkout_sessions/{session_id}", {"buyer": {"email": email}})


def test_an_update_that_must_try_again_answers_with_what_it_wrote(acp, shop_files, monkeypatch):
    from shop.checkout import session_rows

    session_id = acp.create(cart(("widget", 1))).get_json()["id"]
    real = session_rows.update_open
    tries: list[int] = []

    def lose_the_first_race(seen: Any, new: Any, details: Any, *rest: Any) -> bool:
        tries.append(1)
        if len(tries) == 1:  # another worker changed the session between our read and write
            conn = sqlite3.connect(shop_files["db"])
            with conn:
                stored = json.loads(seen.cart)
                stored["buyer"] = {"email": "other@example.com"}
                conn.execute(
                    "UPDATE checkout_sessions SET cart = ? WHERE id = ?",
                    (json.dumps(stored), session_id),
                )
            conn.close()
        return real(seen, new, details, *rest)

    monkeypatch.setattr(session_rows, "update_open", lose_the_first_race)
    answer = _update(acp, session_id, "mine@example.com").get_json()
    assert len(tries) == 2
    assert answer["buyer"]["email"] == "mine@example.com"
    stored = acp.get(f"/checkout_sessions/{session_id}").get_json()
    assert stored["buyer"]["email"] == "mine@example.com"
