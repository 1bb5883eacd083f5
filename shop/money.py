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


# ------------------------------------------------------------- the providers' own units
# Stripe (docs.stripe.com/currencies): ISK is two-decimal on Stripe for backwards
# compatibility (ISO says 0), so 1500 ISK goes out as 150000; three-decimal currencies must
# end in 0. Razorpay (razorpay.com/docs, "three decimal currencies such as KWD, BHD and OMR …
# pass the last decimal number as 0"). IQD and LYD are not presentment currencies on Stripe;
# Razorpay documents no JOD, TND, IQD or LYD.
_PROVIDER_EXPONENTS: dict[str, dict[str, int]] = {"stripe": {"isk": 2}, "razorpay": {}}
_ENDS_IN_ZERO = {
    "stripe": frozenset({"bhd", "jod", "kwd", "omr", "tnd"}),
    "razorpay": frozenset({"bhd", "kwd", "omr"}),
}
_NOT_TAKEN = {
    "stripe": frozenset({"iqd", "lyd"}),
    "razorpay": frozenset({"iqd", "jod", "lyd", "tnd"}),
}


def provider_takes(provider: str, currency: str) -> bool:
    """Say whether `provider` charges in this currency (the offline `test` one takes all)."""
    return currency.lower() not in _NOT_TAKEN.get(provider, frozenset())


def provider_exponent(provider: str, currency: str) -> int:
    """Return the minor-unit digits `provider` counts `currency` in (Stripe ISK: 2)."""
    code = currency.lower()
    return _PROVIDER_EXPONENTS.get(provider, {}).get(code, exponent(code))


def charge_amount(amount: int, currency: str) -> int:
    """Return the amount a charge can be for: three-decimal currencies rounded half-up to a
    multiple of 10 minor units (both providers refuse a last digit other than 0)."""
    if exponent(currency) != 3:
        return amount
    return (amount + 5) // 10 * 10


def to_provider_units(amount: int, currency: str, provider: str) -> int:
    """Turn store minor units (ISO exponent) into what `provider` expects for a charge."""
    code = currency.lower()
    if code in _ENDS_IN_ZERO.get(provider, frozenset()):
        amount = charge_amount(amount, code)
    return amount * 10 ** (provider_exponent(provider, code) - exponent(code))


def from_provider_units(amount: int, currency: str, provider: str) -> int:
    """Turn a provider's amount back into store minor units (Stripe's 150000 ISK -> 1500)."""
    shift = provider_exponent(provider, currency) - exponent(currency)
    return amount // 10**shift if shift > 0 else amount


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
