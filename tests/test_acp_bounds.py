"""Bounded requests: caps on coupon codes, line items and strings, each a 400 naming the limit,
so no stored answer can grow past a fixed ceiling, whatever the request carries."""

from __future__ import annotations

import time

import pytest

from shop.checkout import MAX_COUPON_CODE_LENGTH, MAX_COUPON_CODES, MAX_LINES
from tests.conftest import cart


def test_sixty_thousand_coupon_codes_are_one_short_400(acp) -> None:
    body = cart(coupons=[f"NOPE{i:05d}" for i in range(60_000)])
    started = time.perf_counter()
    response = acp.create(body)
    elapsed = time.perf_counter() - started
    error = response.get_json()
    assert response.status_code == 400
    assert (error["code"], error["param"]) == ("too_many_coupon_codes", "$.coupons")
    assert str(MAX_COUPON_CODES) in error["message"]
    assert len(response.get_data()) < 500
    assert elapsed < 0.5, elapsed  # was 0.8 s and a 12.7 MB answer


@pytest.mark.parametrize(
    ("extra", "code", "param"),
    [
        ({"coupons": ["X"] * (MAX_COUPON_CODES + 1)}, "too_many_coupon_codes", "$.coupons"),
        (
            {"discounts": {"codes": ["X"] * (MAX_COUPON_CODES + 1)}},
            "too_many_coupon_codes",
            "$.discounts.codes",
        ),
        (
            {"coupons": ["TEN", "X" * (MAX_COUPON_CODE_LENGTH + 1)]},
            "coupon_code_too_long",
            "$.coupons[1]",
        ),
        (
            {"line_items": [{"id": "widget"}] * (MAX_LINES + 1)},
            "too_many_line_items",
            "$.line_items",
        ),
        (
            {"buyer": {"email": "jane@example.com", "first_name": "J" * 5001}},
            "too_long",
            "$.buyer.first_name",
        ),
        ({"order_notes": "n" * 5001}, "too_long", "$.order_notes"),
    ],
    ids=["codes", "discount-codes", "code-length", "lines", "name", "notes"],
)
def test_each_cap_is_a_400_naming_the_field(acp, extra, code, param) -> None:
    response = acp.create(cart(**extra))
    error = response.get_json()
    assert response.status_code == 400
    assert (error["code"], error["param"]) == (code, param)


def test_the_caps_themselves_are_accepted(acp) -> None:
    codes = [f"C{i}".ljust(MAX_COUPON_CODE_LENGTH, "X") for i in range(MAX_COUPON_CODES)]
    response = acp.create(cart(coupons=codes))
    assert response.status_code == 201
    assert len(response.get_json()["discounts"]["rejected"]) == MAX_COUPON_CODES


def test_the_largest_answer_has_a_fixed_ceiling(acp) -> None:
    """Every part of an answer is now capped: at most MAX_LINES rendered lines (about 750 bytes
    each), MAX_COUPON_CODES codes, strings of 5000 characters echoed once. A request at every
    cap stays under 128 KB stored, where one create once stored 12.7 MB."""
    codes = [f"C{i}".ljust(MAX_COUPON_CODE_LENGTH, "X") for i in range(MAX_COUPON_CODES)]
    lines = [{"id": item} for item in ("widget", "scarce", "shirt-red", "ebook-team")] * 25
    body = cart(coupons=codes, line_items=lines, order_notes="n" * 5000)
    body["buyer"]["first_name"] = "J" * 5000
    response = acp.create(body)
    assert response.status_code == 201
    assert len(response.get_json()["line_items"]) == MAX_LINES
    assert len(response.get_data()) < 128 * 1024
