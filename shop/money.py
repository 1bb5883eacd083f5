"""Money: integer minor units, currency exponents, and the only place decimals are made."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 minor-unit exponents that differ from the usual 2.
_ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "isk", "jpy", "kmf", "krw", "pyg",
    "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
}  # fmt: skip
_THREE_DECIMAL = {"bhd", "iqd", "jod", "kwd", "lyd", "omr", "tnd"}
_TWO_DECIMAL = {
    "aed", "ars", "aud", "bdt", "bgn", "brl", "cad", "chf", "cny", "cop", "czk",
    "dkk", "egp", "eur", "gbp", "hkd", "huf", "idr", "ils", "inr", "kes", "lkr",
    "mad", "mxn", "myr", "ngn", "nok", "npr", "nzd", "pen", "php", "pkr", "pln",
    "qar", "ron", "rsd", "rub", "sar", "sek", "sgd", "thb", "try", "twd", "uah",
    "usd", "uyu", "zar",
}  # fmt: skip

KNOWN_CURRENCIES = frozenset(_ZERO_DECIMAL | _THREE_DECIMAL | _TWO_DECIMAL)


def exponent(currency: str) -> int:
    """Return the number of minor-unit digits of a currency (JPY 0, USD 2, KWD 3)."""
    code = currency.lower()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def to_decimal(amount: int, currency: str) -> Decimal:
    """Turn integer minor units into a Decimal in major units (2999 usd -> 29.99)."""
    exp = exponent(currency)
    return (Decimal(amount) / (Decimal(10) ** exp)).quantize(Decimal(1).scaleb(-exp))


def from_decimal(value: Decimal | str | int, currency: str) -> int:
    """Turn a major-unit decimal (29.99) into integer minor units, half-up."""
    exp = exponent(currency)
    scaled = (Decimal(str(value)) * (Decimal(10) ** exp)).quantize(Decimal(1), ROUND_HALF_UP)
    return int(scaled)


def format_amount(amount: int, currency: str) -> str:
    """Render minor units as display text, e.g. '29.99 USD' or '1500 JPY'."""
    return f"{to_decimal(amount, currency)} {currency.upper()}"


def percent_of(amount: int, rate: Decimal) -> int:
    """Return amount * rate rounded half-up to whole minor units."""
    return int((Decimal(amount) * rate).quantize(Decimal(1), ROUND_HALF_UP))


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split total across weights proportionally; largest remainders get the leftover units."""
    base = sum(weights)
    if base <= 0 or total <= 0:
        return [0] * len(weights)
    shares = [total * w // base for w in weights]
    remainders = sorted(
        range(len(weights)), key=lambda i: (total * weights[i]) % base, reverse=True
    )
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares
