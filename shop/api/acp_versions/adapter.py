"""The Adapter record and the translations several versions share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Body = dict[str, Any]


def _same(body: Body) -> Body:
    return body


@dataclass(frozen=True, slots=True)
class Adapter:
    """How one ACP version's wire shapes map to and from today's (see the package docstring).

    `error_statuses`: error code -> the HTTP status this version's RFC gives it, where that
    differs from today's.
    """

    version: str
    request: Callable[[Body], Body] = _same
    session: Callable[[Body], Body] = _same
    error: Callable[[Body], Body] = _same
    error_statuses: Mapping[str, int] = field(default_factory=dict)


# Before ACP's idempotency SEP (#121, released in 2026-04-17) the RFC answered a reused
# Idempotency-Key with a different body 409; since then 422 (409 is a request in flight).
BEFORE_IDEMPOTENCY_SEP = {"idempotency_conflict": 409}


def pick(source: Body, keys: Iterable[str]) -> Body:
    """Return the entries of `source` named in `keys`, in that order."""
    return {k: source[k] for k in keys if k in source}


def rename_param(param: str, renames: tuple[tuple[str, str], ...]) -> str:
    """Rewrite the first matching JSONPath prefix (today's name -> the version's)."""
    for today, then in renames:
        if param == today or param.startswith((today + ".", today + "[")):
            return then + param[len(today) :]
    return param


def error_body(body: Body, renames: tuple[tuple[str, str], ...] = ()) -> Body:
    """The flat Error every released version shares: type, code, message, param, nothing else.

    `request_not_idempotent` is kept out: today's codes say more (idempotency_conflict ...).
    """
    out = pick(body, ("type", "code", "message"))
    if "param" in body:
        out["param"] = rename_param(body["param"], renames)
    return out


def totals_by_type(totals: list[Body]) -> dict[str, int]:
    """Return {type: amount} of a Total list."""
    return {t["type"]: t["amount"] for t in totals}


# MessageError codes of the versions before 2026-01-30; every other code reads as `invalid`.
OLD_ERROR_CODES = frozenset(
    ("missing", "invalid", "out_of_stock", "payment_declined", "requires_sign_in", "requires_3ds")
)


def old_messages(messages: list[Body], renames: tuple[tuple[str, str], ...]) -> list[Body]:
    """Messages as MessageInfo / MessageError of the versions before 2026-01-30.

    Those versions have no MessageWarning: a warning is told as an info message.
    """
    out = []
    for message in messages:
        kind = "error" if message["type"] == "error" else "info"
        rendered: Body = {"type": kind}
        if kind == "error":
            code = message.get("code", "invalid")
            rendered["code"] = code if code in OLD_ERROR_CODES else "invalid"
        if "param" in message:
            rendered["param"] = rename_param(message["param"], renames)
        rendered["content_type"] = message["content_type"]
        rendered["content"] = message["content"]
        out.append(rendered)
    return out


def old_status(status: str, allowed: frozenset[str]) -> str:
    """A status the version knows: an expired session reads as canceled before 2026-01-30."""
    if status == "authentication_required" and status not in allowed:
        return "ready_for_payment"  # 3-D Secure pending, for a version without that status
    return status if status in allowed else "canceled"


def old_links(links: list[Body], types: dict[str, str]) -> list[Body]:
    """Links as {type, url} with the version's link types (others are left out)."""
    return [
        {"type": types[link["type"]], "url": link["url"]} for link in links if link["type"] in types
    ]


def old_buyer(buyer: Body) -> Body:
    """Buyer {first_name, last_name, email, phone_number}: first and last name are required.

    Today's buyer may carry only full_name, or only an email: the names are split from
    full_name, else sent empty.
    """
    first, last = buyer.get("first_name"), buyer.get("last_name")
    if (first is None or last is None) and buyer.get("full_name"):
        given, _, family = buyer["full_name"].strip().partition(" ")
        first = first if first is not None else given
        last = last if last is not None else family
    out: Body = {"first_name": first or "", "last_name": last or "", "email": buyer["email"]}
    if buyer.get("phone_number"):
        out["phone_number"] = buyer["phone_number"]
    return out


def old_address(address: Body) -> Body:
    """An Address without today's `company`, which the older versions do not allow."""
    return {k: v for k, v in address.items() if k != "company"}


def old_line(line: Body, *, described: bool) -> Body:
    """A LineItem {id, item: {id, quantity}, base_amount, discount, subtotal, tax, total}."""
    amounts = totals_by_type(line["totals"])
    out: Body = {
        "id": line["id"],
        "item": {"id": line["item"]["id"], "quantity": line["quantity"]},
        "base_amount": amounts.get("items_base_amount", 0),
        "discount": amounts.get("discount", 0),
        "subtotal": amounts.get("subtotal", 0),
        "tax": amounts.get("tax", 0),
        "total": amounts.get("total", 0),
    }
    if described:  # 2025-12-12 and 2026-01-16 add name, images, unit_amount
        out["name"] = line["name"]
        if line.get("images"):
            out["images"] = line["images"]
        out["unit_amount"] = line["unit_amount"]
    return out


def old_totals(totals: list[Body]) -> list[Body]:
    """Totals as {type, display_text, amount}."""
    return [pick(t, ("type", "display_text", "amount")) for t in totals]


def card_handler(body: Body) -> Body | None:
    """Today's tokenized-card handler processed by Stripe (or the offline test provider)."""
    for handler in body.get("capabilities", {}).get("payment", {}).get("handlers", []):
        if handler.get("name") == "dev.acp.tokenized.card" and handler.get("psp") in (
            "stripe",
            "test",
        ):
            return handler
    return None


def old_request_items(body: Body) -> Body:
    """`items` (every version before 2026-01-30) -> today's `line_items`."""
    if "items" in body and "line_items" not in body:
        body = dict(body)
        body["line_items"] = body.pop("items")
    return body
