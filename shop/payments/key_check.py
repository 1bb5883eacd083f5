"""`check --online`: ask the provider, with the store's key, for something harmless.

Stripe: the account balance (GET /v1/balance); Razorpay: the newest order (GET
/v1/orders?count=1). Nothing is created or changed; a wrong, revoked or unreachable key is a
ProviderError with one sentence.
"""

from __future__ import annotations

from typing import Any

from shop.errors import ProviderError

TIMEOUT = 10


def check_provider_key(settings: Any) -> str:
    """Return what the provider answered, in a few words; raise ProviderError when it refused."""
    if settings.payment_provider == "stripe":
        return _stripe(settings)
    if settings.payment_provider == "razorpay":
        return _razorpay(settings)
    return "the offline test provider needs no key"


def _stripe(settings: Any) -> str:
    import stripe

    base = settings.env.get("STRIPE_API_BASE")
    client = stripe.StripeClient(
        settings.secret("STRIPE_SECRET_KEY") or "",
        base_addresses={"api": base.rstrip("/")} if base else None,
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=TIMEOUT),
    )
    try:
        balance = client.v1.balance.retrieve()
    except stripe.AuthenticationError as exc:
        raise ProviderError(
            f"Stripe refused STRIPE_SECRET_KEY ({exc.user_message or 'invalid key'}); copy the "
            "secret key again from Dashboard -> Developers -> API keys."
        ) from exc
    except stripe.PermissionError:
        # A restricted key without balance access is still a working key.
        return "Stripe accepted STRIPE_SECRET_KEY (a restricted key: balance not readable)"
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe could not be asked: {exc.user_message or exc}") from exc
    mode = "live" if balance.livemode else "test"
    return f"Stripe accepted STRIPE_SECRET_KEY (a {mode} mode key; balance read)"


def _razorpay(settings: Any) -> str:
    import razorpay
    import requests

    base = settings.env.get("RAZORPAY_API_BASE")
    client = razorpay.Client(
        auth=(
            settings.secret("RAZORPAY_KEY_ID") or "",
            settings.secret("RAZORPAY_KEY_SECRET") or "",
        ),
        **({"base_url": base.rstrip("/")} if base else {}),
    )
    client.enable_retry(False)
    try:
        client.order.all({"count": 1}, timeout=TIMEOUT)
    except razorpay.errors.BadRequestError as exc:
        raise ProviderError(
            f"Razorpay refused RAZORPAY_KEY_ID / RAZORPAY_KEY_SECRET ({exc}); copy both again "
            "from Dashboard -> Account & Settings -> API Keys."
        ) from exc
    except (razorpay.errors.ServerError, requests.RequestException) as exc:
        raise ProviderError(f"Razorpay could not be asked: {exc}") from exc
    return "Razorpay accepted RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET (orders listed)"
