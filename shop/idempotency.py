"""The Idempotency-Key layer (ACP §6): one decorator in front of every ACP POST/PATCH.

A key is claimed with one INSERT against a unique (scope, key) constraint, so two gunicorn
workers racing on the same key cannot both run the handler. The claim commits on its own so
other workers see it as in flight; the finished response is stored with a conditional UPDATE.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, request
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from shop import clock
from shop.db import IdempotencyRecord, db
from shop.errors import InvalidRequestError, ShopError

MAX_KEY_LENGTH = 255
RETENTION_SECONDS = 24 * 3600
# A claim older than this belongs to a worker that died mid-request; it may be taken over.
STALE_CLAIM_SECONDS = 120


def canonical_json(value: Any) -> bytes:
    """Serialize like RFC 8785 for the JSON our clients send (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def request_fingerprint(body: Any) -> str:
    """Return the SHA-256 of the canonical JSON body."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.response_body, status=record.status_code,
                        mimetype="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _claim(scope: str, key: str, fingerprint: str) -> IdempotencyRecord | Response | None:
    """Insert the claim; return None when we own it, or the Response for an existing record."""
    now = clock.epoch()
    db.session.add(IdempotencyRecord(scope=scope, key=key, request_hash=fingerprint,
                                     state="in_flight", created_at=now))
    try:
        db.session.commit()
        return None
    except IntegrityError:
        db.session.rollback()
    existing = db.session.execute(
        db.select(IdempotencyRecord).filter_by(scope=scope, key=key)
    ).scalar_one_or_none()
    if existing is None:  # purged between our INSERT and SELECT: try once more
        return _claim(scope, key, fingerprint)
    if existing.request_hash != fingerprint:
        raise InvalidRequestError(
            "idempotency_conflict", "This Idempotency-Key was already used with a different "
            "request body; use a new key for a different request.", status=422)
    if existing.state == "done":
        return _replay(existing)
    age = now - existing.created_at
    if age >= STALE_CLAIM_SECONDS:
        taken = db.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == existing.id, IdempotencyRecord.state == "in_flight",
                   IdempotencyRecord.created_at == existing.created_at)
            .values(created_at=now)
        ).rowcount == 1
        db.session.commit()
        if taken:
            return None
    retry = max(1, math.ceil(min(STALE_CLAIM_SECONDS - age, 2)))
    raise InvalidRequestError(
        "idempotency_in_flight", "A request with this Idempotency-Key is still being "
        f"processed; retry after {retry} second(s).", status=409,
        headers={"Retry-After": str(retry)})


def _store(scope: str, key: str, response: Response) -> None:
    if response.status_code >= 500 or response.headers.get("X-Not-Replayable"):
        _forget(scope, key)
        return
    db.session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
        .values(state="done", status_code=response.status_code,
                response_body=response.get_data(as_text=True))
    )
    db.session.commit()


def _forget(scope: str, key: str) -> None:
    db.session.rollback()
    db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.scope == scope,
                                                       IdempotencyRecord.key == key))
    db.session.commit()


def idempotent(render_error: Callable[[ShopError], Response],
               scope_name: Callable[[], str]) -> Callable[[Callable[..., Response]],
                                                          Callable[..., Response]]:
    """Wrap a view so a repeated Idempotency-Key replays, conflicts or waits, per ACP §6."""

    def decorator(view: Callable[..., Response]) -> Callable[..., Response]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            key = request.headers.get("Idempotency-Key", "")
            if not key.strip():
                raise InvalidRequestError("idempotency_key_required",
                                          "The Idempotency-Key header is required on every "
                                          "POST; send a fresh UUID per distinct request.")
            if len(key) > MAX_KEY_LENGTH:
                raise InvalidRequestError("idempotency_key_too_long",
                                          f"The Idempotency-Key header is {len(key)} characters;"
                                          f" use at most {MAX_KEY_LENGTH} (a UUID is 36).")
            body = request.get_json(silent=True)
            fingerprint = request_fingerprint(body if body is not None else
                                              request.get_data(as_text=True))
            scope = f"{scope_name()}:{request.path}"
            claimed = _claim(scope, key, fingerprint)
            if isinstance(claimed, Response):
                return claimed
            try:
                try:
                    response = view(*args, **kwargs)
                except ShopError as exc:
                    response = render_error(exc)
            except BaseException:
                _forget(scope, key)
                raise
            _store(scope, key, response)
            response.headers.pop("X-Not-Replayable", None)
            return response

        return wrapper

    return decorator


def purge_idempotency_records() -> int:
    """Delete records older than the retention window; return how many."""
    cutoff = clock.epoch() - RETENTION_SECONDS
    result = db.session.execute(delete(IdempotencyRecord)
                                .where(IdempotencyRecord.created_at < cutoff))
    db.session.commit()
    return result.rowcount or 0
