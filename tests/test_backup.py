"""`flask --app app backup PATH` under load, and the documented restore, end to end.

A store (real gunicorn) takes checkouts from a steady stream of buyers while its receiver is
failing, so paid orders wait undelivered. The backup command runs in the middle of it, as a
merchant's cron job would. The copy is then restored the documented way (docs/deploy.md) into
a fresh store whose receiver works: it answers every session the copy held, and delivers
every order the copy held, each once.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import uuid

import requests

from tests.conftest import API_VERSION, ROOT, cart, payment
from tests.gunicorn_server import gunicorn, store_env


def _headers() -> dict[str, str]:
    return {
        "Authorization": "Bearer demo",
        "API-Version": API_VERSION,
        "Idempotency-Key": str(uuid.uuid4()),
    }


def _flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_backup_under_load_restores_into_a_store_that_delivers_its_orders(
    shop_files, order_receiver
):
    env = store_env(shop_files, order_receiver)
    backup = shop_files["dir"] / "backups" / "shop-backup.sqlite3"
    backup.parent.mkdir()
    order_receiver.mode = "error"  # orders wait undelivered (retried later)
    stop = threading.Event()
    answered: list[int] = []

    def buyers(url: str) -> None:
        with requests.Session() as http:
            while not stop.is_set():
                created = http.post(
                    f"{url}/checkout_sessions", json=cart(), headers=_headers(), timeout=30
                )
                done = http.post(
                    f"{url}/checkout_sessions/{created.json()['id']}/complete",
                    json=payment(),
                    headers=_headers(),
                    timeout=30,
                )
                answered.append(done.status_code)

    with gunicorn(env, workers=2) as url:
        load = [threading.Thread(target=buyers, args=(url,)) for _ in range(3)]
        for thread in load:
            thread.start()
        try:
            while len(answered) < 15:  # the store is busy when the backup starts
                stop.wait(0.05)
            taken = _flask(env, "backup", str(backup))
            during = len(answered)
            while len(answered) < during + 10:  # and stays busy after it
                stop.wait(0.05)
        finally:
            stop.set()
            for thread in load:
                thread.join(30)
    assert taken.returncode == 0, taken.stderr
    assert "backed up to" in taken.stdout and "order message(s) not delivered" in taken.stdout
    assert set(answered) == {200}
    assert not list(backup.parent.glob("*.part"))  # only the finished copy is left
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        held = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM checkout_sessions WHERE status = 'completed' ORDER BY id"
            )
        ]
        waiting = conn.execute(
            "SELECT count(*) FROM order_deliveries WHERE state != 'delivered'"
        ).fetchone()[0]
    conn.close()
    assert len(held) >= 15 and waiting == len(held)  # the receiver took none of them

    # The documented restore: stop the store, copy the backup over the database (no -wal or
    # -shm left beside it), start it, replay what was waiting.
    restored = shop_files["dir"] / "restored" / "shop.sqlite3"
    restored.parent.mkdir()
    shutil.copy(backup, restored)
    order_receiver.mode = "ok"
    restored_env = {**env, "SHOP_DATABASE_URL": f"sqlite:///{restored}"}
    with gunicorn(restored_env, workers=2) as url:
        for session_id in held:
            got = requests.get(f"{url}/checkout_sessions/{session_id}", headers=_headers())
            assert got.status_code == 200 and got.json()["status"] == "completed"
        replayed = _flask(restored_env, "orders", "replay", "--failed")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        order_receiver.wait_for(len(held), timeout=30)
    delivered = sorted(o["order"]["checkout_session_id"] for o in order_receiver.orders)
    assert delivered == held  # every order the backup held, each once
