"""config.json `threeDS`: the acquirer details an agent's 3-D Secure server needs (ACP 2026-04-17).

```json
"threeDS": {"acquirerBin": "424242", "acquirerCountry": "GB", "acquirerMerchantId": "m_123",
            "merchantName": "My Store", "requestorId": "optional",
            "challenge": "preferred"}
```

With it, the card handler advertises `supports_3ds: true` and a charge the issuer wants
authenticated answers `authentication_required` with `authentication_metadata` built here
(the directory server chosen by card brand). Without it, such a charge is declined with a
`requires_3ds` message, as before. Lengths follow the spec's AcquirerDetails.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shop.config.fields import Fields

# ACP AuthenticationMetadata.directory_server: the card networks' 3DS directory servers.
DIRECTORY_SERVERS = {"visa": "visa", "mastercard": "mastercard", "amex": "american_express"}
_FIELDS = (  # config key, spec key, max length, example
    ("acquirerBin", "acquirer_bin", 11, "424242"),
    ("acquirerCountry", "acquirer_country", 2, "GB"),
    ("acquirerMerchantId", "acquirer_merchant_id", 35, "merchant_123"),
    ("merchantName", "merchant_name", 40, "My Store"),
)


@dataclass(frozen=True, slots=True)
class ThreeDSConfig:
    """The acquirer details for 3-D Secure performed on the agent's side."""

    acquirer_details: Mapping[str, str]
    challenge: str | None = None  # "preferred" | "mandated": the seller's flow preference

    def metadata(self, brand: str | None, credential: Any = None) -> dict[str, Any] | None:
        """Return ACP AuthenticationMetadata for a card of `brand`; None when no directory
        server in the spec serves that brand (3DS cannot be offered for it)."""
        server = DIRECTORY_SERVERS.get((brand or "").lower())
        if server is None:
            return None
        metadata: dict[str, Any] = {
            "acquirer_details": dict(self.acquirer_details),
            "directory_server": server,
        }
        if self.challenge:
            metadata["flow_preference"] = {
                "type": "challenge",
                "challenge": {"type": self.challenge},
            }
        return metadata


def parse_three_ds(cfg: Fields) -> ThreeDSConfig | None:
    """Read config.json `threeDS`; None when absent."""
    if cfg.raw("threeDS") is None:
        return None
    three_ds = cfg.obj("threeDS")
    details: dict[str, str] = {}
    for key, spec_key, limit, example in _FIELDS:
        value = three_ds.text(key, example=example)
        if value is None:
            raise three_ds.error(
                key,
                f"is missing; 3-D Secure needs all of acquirerBin, acquirerCountry, "
                f'acquirerMerchantId and merchantName from your acquirer (e.g. "{example}").',
            )
        if len(value) > limit:
            raise three_ds.error(key, f"is longer than {limit} characters; shorten it.")
        details[spec_key] = value
    if not re.fullmatch(r"[A-Z]{2}", details["acquirer_country"]):
        raise three_ds.error(
            "acquirerCountry", 'must be a two-letter upper-case ISO 3166 code such as "GB".'
        )
    requestor = three_ds.text("requestorId", example="requestor_42")
    if requestor:
        if len(requestor) > 35:
            raise three_ds.error("requestorId", "is longer than 35 characters; shorten it.")
        details["requestor_id"] = requestor
    challenge = three_ds.text("challenge", example="preferred")
    if challenge not in (None, "preferred", "mandated"):
        raise three_ds.error("challenge", 'must be "preferred" or "mandated" (or left out).')
    return ThreeDSConfig(details, challenge)
