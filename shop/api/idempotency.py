"""The Idempotency-Key layer (ACP §6): one decorator in front of every ACP POST/PATCH.

A request goes through it like this:

1. The surface decodes the body strictly (shop/json_body.py) and it is fingerprinted as
   canonical JSON. A body that cannot be fingerprinted (not JSON, NaN, a lone surrogate, too
   deep …) answers 400 before anything is claimed: nothing is stored, and the same key may be
   sent again with a corrected body.
2. A look-up outside any transaction answers a known key: same body -> the stored response
   with `Idempotent-Replayed: true`; another body -> 422; still running -> 409 + Retry-After.
   A one-transaction view (create, update) may skip it (`look_up_first`): its claim is
   inserted `done` with its change, so a known key makes that insert fail, the change rolls
   back, and the same look-up answers then. One read fewer per request; a retry runs the
   view once more for nothing, which is why views with a side effect outside the database
   (a Razorpay order) look first.
3. Otherwise the claim (an in-flight row, unique on (scope, key)) is inserted as the first
   statement of the handler's first transaction, so it commits with the handler's first
   change: create and update commit claim, change and stored response together; complete
   commits the claim with its stock reservation, before the provider is called.
4. The response is stored in the handler's still-open transaction when there is one, else in
   a short one of its own. 5xx and non-replayable answers are never stored.

Two workers racing on one new key: the unique constraint lets one claim win; the loser's
transaction (claim and any change) rolls back and it answers as a retry would.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, request
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from shop import clock, metrics
from shop.api.fingerprint import request_fingerprint
from shop.errors import InvalidRequestError, ShopError
from shop.storage import health, read, transaction
from shop.storage.models import KEEP_ON_ERROR, PAYMENT_TAKEN, IdempotencyRecord
from shop.storage.transaction import write

log = logging.getLogger("shop.idempotency")

MAX_KEY_LENGTH = 255
# A claim older than this belongs to a worker that died mid-request; it may be taken over.
STALE_CLAIM_SECONDS = 120

_PENDING = "shop.idempotency_claim"  # transaction.info(): the claim to insert when one begins
_T = IdempotencyRecord.__table__
_SAME = (_T.c.scope == bindparam("k_scope"), _T.c.key == bindparam("k_key"))
_FIND = select(
    _T.c.request_hash, _T.c.state, _T.c.status_code, _T.c.response_body, _T.c.created_at
).where(*_SAME)
_COLUMNS = ("scope", "key", "request_hash", "state", "status_code", "response_body", "created_at")
_INSERT = insert(_T).values({name: bindparam(name) for name in _COLUMNS})
_FINISH = (
    update(_T)
    .where(*_SAME, _T.c.request_hash == bindparam("k_hash"))
    .values(state="done", status_code=bindparam("k_status"), response_body=bindparam("k_body"))
)
_TAKE_OVER = (
    update(_T)
    .where(*_SAME, _T.c.state == "in_flight", _T.c.created_at == bindparam("k_seen"))
    .values(created_at=bindparam("k_now"))
)
_FORGET = delete(_T).where(
    *_SAME, _T.c.request_hash == bindparam("k_hash"), _T.c.state == "in_flight"
)


class ClaimTakenError(Exception):
    """Another request claimed this key between our look-up and our claim."""


def _fingerprint(body: Any) -> str:
    try:
        return request_fingerprint(body)
    except (ValueError, RecursionError):  # the surface's strict decoder lets none through
        raise InvalidRequestError(
            "invalid_json",
            "The request body cannot be read as canonical JSON (RFC 8785); "
            "send finite numbers and valid Unicode text.",
            "$",
        ) from None


def _replay(row: Any) -> Response:
    metrics.IDEMPOTENCY.labels(outcome="replayed").inc()
    response = Response(row.response_body, status=row.status_code, mimetype="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _in_flight(age: int) -> InvalidRequestError:
    metrics.IDEMPOTENCY.labels(outcome="in_flight").inc()
    retry = max(1, math.ceil(min(STALE_CLAIM_SECONDS - age, 2)))
    return InvalidRequestError(
        "idempotency_in_flight",
        "A request with this Idempotency-Key is still being "
        f"processed; retry after {retry} second(s).",
        status=409,
        headers={"Retry-After": str(retry)},
    )


def _keys(scope: str, key: str, fingerprint: str) -> dict[str, Any]:
    return {"k_scope": scope, "k_key": key, "k_hash": fingerprint}


def _known(scope: str, key: str, fingerprint: str) -> Response | bool:
    """Answer a key seen before; True when we took over a stale claim, False when it is new."""
    rows = read(_FIND, _keys(scope, key, fingerprint))
    if not rows:
        return False
    existing = rows[0]
    if existing.request_hash != fingerprint:
        metrics.IDEMPOTENCY.labels(outcome="conflict").inc()
        raise InvalidRequestError(
            "idempotency_conflict",
            "This Idempotency-Key was already used with a different "
            "request body; use a new key for a different request.",
            status=422,
        )
    if existing.state == "done":
        return _replay(existing)
    now = clock.epoch()
    age = now - existing.created_at
    if age >= STALE_CLAIM_SECONDS:
        taken = (
            write(
                _TAKE_OVER,
                {**_keys(scope, key, fingerprint), "k_seen": existing.created_at, "k_now": now},
            )
            == 1
        )
        transaction.commit()
        if taken:
            return True
    raise _in_flight(age)


def _claim_values(scope: str, key: str, fingerprint: str) -> dict[str, Any]:
    return {
        "scope": scope,
        "key": key,
        "request_hash": fingerprint,
        "state": "in_flight",
        "status_code": None,
        "response_body": None,
        "created_at": clock.epoch(),
    }


@transaction.on_begin
def _insert_pending_claim(write_in_transaction: transaction.Write) -> None:
    """Make the pending claim the first statement of the handler's first transaction."""
    values = transaction.info().pop(_PENDING, None)
    if values is None:
        return
    try:
        write_in_transaction(_INSERT, values)
    except IntegrityError:
        raise ClaimTakenError(values["key"]) from None


def _store(
    scope: str,
    key: str,
    fingerprint: str,
    response: Response,
    failed: bool,
    deferred: dict[str, Any] | None = None,
    looked_up: bool = True,
) -> Response:
    """Record the response; a payment taken is answered even when the database refuses it.

    The order of a payment whose record could not be stored is in the log in full
    (shop.checkout.outcomes); the agent still hears that it was paid.
    """
    try:
        return _store_response(scope, key, fingerprint, response, failed, deferred, looked_up)
    except Exception as exc:
        if not transaction.info().get(PAYMENT_TAKEN):
            raise
        log.error(
            "the answer to a paid checkout could not be stored (%s); it is answered anyway "
            "and a retry with the same key reads the session as the database has it",
            exc,
        )
        health.failure(exc)
        with contextlib.suppress(Exception):
            transaction.rollback()
        return response


def _store_response(
    scope: str,
    key: str,
    fingerprint: str,
    response: Response,
    failed: bool,
    deferred: dict[str, Any] | None = None,
    looked_up: bool = True,
) -> Response:
    """Record the response, with the handler's open transaction when it left one.

    `deferred` is the claim of a one-transaction handler, never inserted as in-flight.
    Return what to answer: the response, or, when another request holds the key after all
    (our claim never reached the database, and theirs did), what a retry would get.
    `looked_up`: False when the key was not looked up first (see `idempotent`).
    """
    if response.status_code >= 500 or response.headers.get("X-Not-Replayable"):
        _forget(scope, key, fingerprint)
        if not looked_up:  # the key may be known: what it answered then is the answer
            known = _known(scope, key, fingerprint)
            if isinstance(known, Response):
                return known
        return response
    # Still pending: no transaction began, so our claim was never inserted.
    pending = transaction.info().pop(_PENDING, None) or deferred
    if failed:
        _abandon()  # an error answer keeps no half-made change (nor our claim)
    params = {
        **_keys(scope, key, fingerprint),
        "k_status": response.status_code,
        "k_body": response.get_data(as_text=True),
    }
    # A claim never inserted is not ours to finish: the in-flight row with this key, if any,
    # is another request's (it claimed between our look-up and now).
    if pending is not None or write(_FINISH, params) == 0:
        if transaction.info().pop(KEEP_ON_ERROR, False):
            transaction.commit()  # a taken payment never waits on the insert below
        values = pending or _claim_values(scope, key, fingerprint)
        try:
            write(
                _INSERT,
                {
                    **values,
                    "state": "done",
                    "status_code": response.status_code,
                    "response_body": params["k_body"],
                },
            )
        except IntegrityError:
            return _after_lost_race(scope, key, fingerprint)
    transaction.info().pop(KEEP_ON_ERROR, None)
    transaction.commit()
    return response


def _abandon() -> None:
    """End the handler's transaction after a failure: roll back, unless it holds a payment."""
    if transaction.info().pop(KEEP_ON_ERROR, False):
        transaction.commit()  # the money was taken: its record stays (a paid order is never lost)
    else:
        transaction.rollback()


def _forget(scope: str, key: str, fingerprint: str) -> None:
    transaction.info().pop(_PENDING, None)
    try:
        _abandon()
        write(_FORGET, _keys(scope, key, fingerprint))
        transaction.commit()
    except Exception as exc:
        # The database itself is failing (the answer says so): the claim, if stored, is
        # taken over as stale after STALE_CLAIM_SECONDS.
        if health.failure(exc) is None:
            raise
        with contextlib.suppress(Exception):
            transaction.rollback()


def _after_lost_race(scope: str, key: str, fingerprint: str) -> Response:
    _abandon()
    known = _known(scope, key, fingerprint)
    if isinstance(known, Response):
        return known
    raise _in_flight(0)  # the winner gave its claim up meanwhile: the client retries


def idempotent(
    render_error: Callable[[ShopError], Response],
    scope_name: Callable[[], str],
    parse_body: Callable[[], Any],
    one_transaction: bool = False,
    look_up_first: Callable[[], bool] | None = None,
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Wrap a view so a repeated Idempotency-Key replays, conflicts or waits, per ACP §6.

    `parse_body` decodes the request body strictly (raising the surface's 400) and should
    cache it, since the view reads it again. `one_transaction` is for views that commit
    nothing themselves (create, update): their claim is inserted already `done`, with the
    response, in their one transaction, instead of in-flight first and finished after (one
    statement fewer; the unique key still lets one of two racing requests win, and the
    loser's whole transaction rolls back). With `one_transaction`, the key is looked up
    before the view runs only when `look_up_first()` is true (or not given); otherwise the
    failed insert of a known key answers instead (see the module's step 2).
    """

    def decorator(view: Callable[..., Response]) -> Callable[..., Response]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            current = request._get_current_object()
            key = current.headers.get("Idempotency-Key", "")
            if not key.strip():
                raise InvalidRequestError(
                    "idempotency_key_required",
                    "The Idempotency-Key header is required on every "
                    "POST; send a fresh UUID per distinct request.",
                )
            if len(key) > MAX_KEY_LENGTH:
                raise InvalidRequestError(
                    "idempotency_key_too_long",
                    f"The Idempotency-Key header is {len(key)} characters;"
                    f" use at most {MAX_KEY_LENGTH} (a UUID is 36).",
                )
            fingerprint = _fingerprint(parse_body())
            scope = f"{scope_name()}:{current.path}"
            looked_up = not one_transaction or look_up_first is None or look_up_first()
            known = _known(scope, key, fingerprint) if looked_up else False
            if isinstance(known, Response):
                return known
            failed = False
            deferred = None
            try:
                try:
                    if not known and one_transaction:
                        deferred = _claim_values(scope, key, fingerprint)
                    elif not known:  # a new key: claim it in the handler's first transaction
                        transaction.info()[_PENDING] = _claim_values(scope, key, fingerprint)
                        if transaction.active():  # already begun: claim right now
                            _insert_pending_claim(write)
                    response = view(*args, **kwargs)
                except ShopError as exc:
                    response, failed = render_error(exc), True
            except ClaimTakenError:
                return _after_lost_race(scope, key, fingerprint)
            except BaseException as exc:
                _forget(scope, key, fingerprint)
                if not looked_up and isinstance(exc, Exception):
                    known = _known(scope, key, fingerprint)  # a retry: the stored answer
                    if isinstance(known, Response):
                        return known
                raise
            response = _store(scope, key, fingerprint, response, failed, deferred, looked_up)
            response.headers.pop("X-Not-Replayable", None)
            return response

        return wrapper

    return decorator
