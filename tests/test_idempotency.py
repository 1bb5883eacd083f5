"""Idempotency-Key semantics (ACP §6) on every POST surface."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest

from shop.api import fingerprint, idempotency
from shop.api.fingerprint import canonical_json
from tests.conftest import AcpClient, assert_acp, cart, payment


def test_missing_key_is_400(acp):
    headers = acp.headers()
    del headers["Idempotency-Key"]
    response = acp.client.post("/checkout_sessions", json=cart(), headers=headers)
    assert response.status_code == 400
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "idempotency_key_required"


def test_overlong_key_is_400(acp):
    response = acp.create(key="k" * 256)
    assert response.status_code == 400
    assert response.get_json()["code"] == "idempotency_key_too_long"


def test_replay_returns_stored_response_with_header(acp):
    first = acp.create(key="same-key")
    second = acp.create(key="same-key")
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json() == first.get_json()
    assert "Idempotent-Replayed" not in first.headers


def test_replay_ignores_key_order_and_whitespace(acp):
    body = cart()
    first = acp.create(body, key="canon")
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)
    second = acp.client.post(
        "/checkout_sessions",
        data=reordered,
        content_type="application/json",
        headers=acp.headers("canon"),
    )
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_json()["id"] == first.get_json()["id"]


def test_same_key_different_body_is_422(acp):
    acp.create(cart(("widget", 1)), key="k1")
    response = acp.create(cart(("widget", 2)), key="k1")
    assert response.status_code == 422
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "idempotency_conflict"


def test_keys_are_scoped_by_path(acp):
    created = acp.create(key="shared").get_json()
    response = acp.post(f"/checkout_sessions/{created['id']}", {"coupons": ["TEN"]}, key="shared")
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers


def test_keys_are_scoped_by_api_key(make_app):
    from tests.conftest import AcpClient

    app = make_app(env={"SHOP_API_KEYS": "openai:tok-a,gemini:tok-b"})
    a = AcpClient(app.test_client(), "tok-a")
    b = AcpClient(app.test_client(), "tok-b")
    first = a.create(key="k").get_json()
    second = b.create(key="k").get_json()
    assert first["id"] != second["id"]


def test_in_flight_is_409_with_retry_after(acp, app):
    from shop import clock
    from shop.api.fingerprint import request_fingerprint
    from shop.storage.models import IdempotencyRecord, db

    body = cart()
    with app.app_context():
        db.session.add(
            IdempotencyRecord(
                scope="demo:/checkout_sessions",
                key="busy",
                request_hash=request_fingerprint(body),
                state="in_flight",
                created_at=clock.epoch(),
            )
        )
        db.session.commit()
    response = acp.create(body, key="busy")
    assert response.status_code == 409
    assert_acp(response.get_json(), "Error")
    assert response.get_json()["code"] == "idempotency_in_flight"
    assert int(response.headers["Retry-After"]) >= 1


def test_errors_4xx_are_replayed(acp):
    first = acp.create(cart(("nope", 1)), key="bad")
    second = acp.create(cart(("nope", 1)), key="bad")
    assert first.status_code == second.status_code == 400
    assert second.headers["Idempotent-Replayed"] == "true"


def test_5xx_is_not_stored(acp, app, monkeypatch):
    from shop import checkout

    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("database fell over")

    monkeypatch.setattr(checkout, "create_session", boom)
    first = acp.create(key="flaky")
    assert first.status_code == 500
    assert_acp(first.get_json(), "Error")
    monkeypatch.undo()
    second = acp.create(key="flaky")
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers


def test_complete_replay_does_not_charge_again(acp, app):
    created = acp.create(cart(("scarce", 1))).get_json()
    first = acp.complete(created["id"], key="pay-1")
    second = acp.complete(created["id"], key="pay-1")
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.get_json() == second.get_json()
    sink = app.extensions["shop"].sink
    import time

    deadline = time.time() + 5
    while not sink.orders and time.time() < deadline:
        time.sleep(0.02)
    assert len(sink.orders) == 1


def test_a_request_that_missed_anothers_claim_answers_as_a_retry(acp, monkeypatch):
    """Same key, same body, and the look-up ran just before the first request's claim landed:
    the second must not answer (or store) for the first; it gets what a retry gets."""

    session_id = acp.create().get_json()["id"]
    first = acp.complete(session_id, "tok_pending", key="k-race")
    assert first.get_json()["status"] == "in_progress"
    real_read, missed = idempotency.read, []

    def read_missing_once(stmt, *args):  # the look-up runs before the claim is visible
        if stmt is idempotency._FIND and not missed:
            missed.append(stmt)
            return []
        return real_read(stmt, *args)

    monkeypatch.setattr(idempotency, "read", read_missing_once)
    second = acp.complete(session_id, "tok_pending", key="k-race")
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_json() == first.get_json()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"b": 1, "a": [1, 2]}, {"a": [1, 2], "b": 1}),
        ({"x": "é"}, {"x": "\u00e9"}),
    ],
)
def test_canonical_json_equivalence(a, b):
    assert canonical_json(a) == canonical_json(b)


def test_complete_body_matters_for_conflict(acp):
    created = acp.create().get_json()
    acp.post(f"/checkout_sessions/{created['id']}/complete", payment("tok_chargeDeclined"), key="c")
    path = f"/checkout_sessions/{created['id']}/complete"
    response = acp.post(path, payment("tok_visa"), key="c")
    assert response.status_code == 422


def _sessions(db_path) -> int:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM checkout_sessions").fetchone()[0]


def test_failed_create_leaves_neither_session_nor_record(acp, app, monkeypatch, shop_files):
    """Claim, session and stored response commit together: a crash in between keeps none."""
    from shop.api import acp as acp_api

    def boom(*args, **kwargs):
        raise RuntimeError("renderer fell over after the session was written")

    monkeypatch.setattr(acp_api, "render_session", boom)
    assert acp.create(key="atomic").status_code == 500
    assert _sessions(shop_files["db"]) == 0
    monkeypatch.undo()
    again = acp.create(key="atomic")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert _sessions(shop_files["db"]) == 1


def test_stored_response_is_committed_with_the_update(acp, app):
    from shop.storage.models import IdempotencyRecord, db

    created = acp.create().get_json()
    updated = acp.post(f"/checkout_sessions/{created['id']}", {"coupons": ["TEN"]}, key="u1")
    with app.app_context():
        record = db.session.execute(db.select(IdempotencyRecord).filter_by(key="u1")).scalar_one()
        assert (record.state, record.status_code) == ("done", 200)
        assert json.loads(record.response_body) == updated.get_json()


def test_racing_requests_with_one_key_make_one_session(shop_files):
    """Twelve identical creates at once on three gunicorn workers: one session, one answer."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.conftest import API_VERSION
    from tests.gunicorn_server import gunicorn

    env = {
        "SHOP_CONFIG": str(shop_files["config"]),
        "SHOP_PRODUCTS": str(shop_files["products"]),
        "SHOP_DATABASE_URL": f"sqlite:///{shop_files['db']}",
        "SHOP_API_KEYS": "",
    }
    headers = {
        "Authorization": "Bearer demo",
        "API-Version": API_VERSION,
        "Idempotency-Key": "same-key-everywhere",
    }
    with gunicorn(env, workers=3, threads=4) as url, ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(
                lambda _: requests.post(
                    f"{url}/checkout_sessions", json=cart(), headers=headers, timeout=20
                ),
                range(12),
            )
        )
    statuses = {a.status_code for a in answers}
    assert statuses <= {201, 409}, [a.text for a in answers]
    created = [a.json() for a in answers if a.status_code == 201]
    assert created
    assert len({c["id"] for c in created}) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["code"] == "idempotency_in_flight"
    assert _sessions(shop_files["db"]) == 1


def test_non_ascii_answers_are_utf8_and_replay_byte_identical(shop_files, make_app):
    """Answers carry non-ASCII as UTF-8 (not \\u escapes); a replay is the same bytes."""
    from shop.storage.models import IdempotencyRecord, db

    title, first_name = "Café Widget — 日本製", "Zoë"
    products = json.loads(shop_files["products"].read_text(encoding="utf-8"))
    products[0]["title"] = title
    shop_files["products"].write_text(json.dumps(products), encoding="utf-8")
    app = make_app()
    acp = AcpClient(app.test_client())
    body = cart(buyer={"email": "zoe@example.com", "first_name": first_name, "last_name": "Ōkubo"})

    first = acp.create(body, key="utf8-create")
    assert first.status_code == 201
    assert first.mimetype == "application/json"  # JSON is UTF-8 by definition (RFC 8259 §8.1)
    assert title.encode() in first.data and first_name.encode() in first.data
    session = json.loads(first.data.decode("utf-8"))
    assert session["line_items"][0]["name"] == title
    assert session["buyer"]["first_name"] == first_name

    again = acp.create(body, key="utf8-create")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (again.status_code, again.mimetype) == (201, "application/json")
    assert again.data == first.data

    paid = acp.complete(session["id"], key="utf8-complete")  # stored by the in-flight claim
    assert paid.status_code == 200 and title.encode() in paid.data
    repeat = acp.complete(session["id"], key="utf8-complete")
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.data == paid.data
    with app.app_context():
        stored = db.session.execute(
            db.select(IdempotencyRecord.response_body).filter_by(key="utf8-create")
        ).scalar_one()
    assert stored == first.data.decode("utf-8")


def _as_the_json_module_wrote_it(value: Any) -> bytes | type[BaseException]:
    """canonical_json before orjson wrote it: the bytes every stored fingerprint hashes."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (ValueError, RecursionError) as exc:
        return type(exc)


def _canonical_or_error(value: Any) -> bytes | type[BaseException]:
    try:
        return canonical_json(value)
    except (ValueError, RecursionError) as exc:
        return type(exc)


_TEXT_POOLS = (
    "abcxyzABC 0123456789-+_",
    '"\\/\b\f\n\r\t\x00\x01\x1f\x7f\x80\x9f',
    "éßçøÅ€ĀŻ\u00a0\u00ad",
    "中文日本語한국어\u3000",
    "\u2028\u2029\ufeff\ufffd\ufffe\uffff\ue000\uf8ff",
    "\U0001f600\U0001f4a5\U00010000\U0010ffff\U000e0001",
    "[]{}:,",
    "1.5e7 null",  # text that looks like a float or a NaN (written by the json module)
)


def _random_text(rnd: random.Random, pools: int) -> str:
    return "".join(
        rnd.choice(_TEXT_POOLS[rnd.randrange(pools)])
        for _ in range(rnd.randint(0, rnd.choice((3, 12))))
    )


def _random_scalar(rnd: random.Random, clean: bool) -> Any:
    """A scalar; `clean` ones are what orjson writes itself (no float, None or huge integer)."""
    kind = rnd.randrange(4 if clean else 9)
    if kind == 0:
        return _random_text(rnd, len(_TEXT_POOLS) - clean)
    if kind == 1:
        return rnd.randint(-(10**6), 10**6)
    if kind == 2:  # up to orjson's 64-bit limits, and (not clean) past them
        edge, low, high = rnd.choice(
            ((2**63, -3, 3), (2**64, -3, -1 if clean else 3), (-(2**63), 0 if clean else -3, 3))
        )
        return edge + rnd.randint(low, high)
    if kind == 3:
        return rnd.choice((True, False))
    if kind == 4:
        return rnd.choice((None, rnd.randint(-(10**40), 10**40)))
    if kind == 5:
        return rnd.choice((0.0, -0.0, 0.1, 1.0, 12.5, 29.99, 1e16, 1e-7, 1e22, 5e-324))
    if kind == 6:
        number = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0]
        return number if math.isfinite(number) else rnd.uniform(-1e6, 1e6)
    if kind == 7:
        return rnd.choice((float("nan"), float("inf"), -math.inf))
    return rnd.choice(("a\ud800b", "\udfff"))


def _random_document(rnd: random.Random, clean: bool, depth: int = 0) -> Any:
    if depth >= 5 or rnd.random() < 0.35:
        return _random_scalar(rnd, clean)
    if rnd.random() < 0.4:
        return [_random_document(rnd, clean, depth + 1) for _ in range(rnd.randint(0, 5))]
    return {
        _random_text(rnd, len(_TEXT_POOLS) - clean): _random_document(rnd, clean, depth + 1)
        for _ in range(rnd.randint(0, 5))
    }


def test_canonical_json_bytes_never_change_for_random_documents(monkeypatch):
    """Fingerprints stored before orjson must still match: byte for byte, error for error."""
    written_by_json = []
    real = fingerprint._canonical_with_json

    def counted(value: Any) -> bytes:
        written_by_json.append(value)
        return real(value)

    monkeypatch.setattr(fingerprint, "_canonical_with_json", counted)
    rnd = random.Random(8785)
    for round_ in range(4000):
        clean = round_ % 2 == 0
        document = _random_document(rnd, clean)
        assert _canonical_or_error(document) == _as_the_json_module_wrote_it(document), document
        if clean:  # orjson wrote it: the comparison above covered the fast path
            assert not written_by_json, document
        written_by_json.clear()


def test_canonical_json_bytes_never_change_for_every_character():
    characters = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(characters), 2048):
        chunk = characters[start : start + 2048]
        for document in ("".join(chunk), {c: i for i, c in enumerate(reversed(chunk))}):
            assert _canonical_or_error(document) == _as_the_json_module_wrote_it(document)


@pytest.mark.parametrize(
    "document",
    [
        {"\uffff": 1, "\U00010000": 2, "\ue000": 3, "\ud7ff": 4, "": 5, "a": 6, "A": 7},
        {"10": 1, "9": 2, "1": 3, "-1": 4, " ": 5, "\x00": 6},
        [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**100],
        [1e-7, 1e16, 1e-5, 1e-4, 123456789012345680.0, 0.1 + 0.2, -0.0, 5e-324],
        [float("nan")],
        {"a": float("inf")},
        {"note": None, "ok": True},
        ["a\ud800b"],
        {"\udfff": 1},
        {1: "non-str key"},
        {"nested": [[[[[[[[[[[]]]]]]]]]]]},
        "1e5",
        "nullnull",
        12.0,
        -(2**64),
    ],
)
def test_canonical_json_bytes_never_change_for_edge_documents(document):
    assert _canonical_or_error(document) == _as_the_json_module_wrote_it(document)


@pytest.mark.parametrize("depth", [200, 254, 255, 400])
def test_canonical_json_bytes_never_change_past_orjsons_depth_limit(depth):
    document: Any = "x"
    for level in range(depth):
        document = [document] if level % 2 else {"k": document}
    assert _canonical_or_error(document) == _as_the_json_module_wrote_it(document)


def test_request_fingerprints_are_the_ones_stored_before():
    body = {
        "currency": "usd",
        "line_items": [{"id": "widget", "quantity": 2}],
        "buyer": {
            "email": "zoë@example.com",
            "first_name": "大久保 \U0001f600",
            "phone_number": '\t"\\\x00\x7f',
        },
    }
    assert fingerprint.request_fingerprint(body) == (
        "df28c39b2984cba5aa0bfc958ca429016ab5858e975354844e3e9438bbb3c07d"
    )
    body["n"] = [2**63, -(2**63), 2**64 - 1, None, True, False, 12.5, 1e-07]
    assert fingerprint.request_fingerprint(body) == (
        "b5e6d999c1d689fac7416739dbeace40b3fe70a3b03792796c08a08e5930e75f"
    )


def test_an_ordinary_body_is_written_by_orjson(monkeypatch):
    """The fast path is the point: a float-free body never reaches the json module."""
    body = cart(buyer={"email": "zoë@example.com", "first_name": "大久保"})
    expected = _as_the_json_module_wrote_it(body)

    def refuse(value: Any) -> bytes:
        raise AssertionError("written by the json module")

    monkeypatch.setattr(fingerprint, "_canonical_with_json", refuse)
    assert canonical_json(body) == expected
