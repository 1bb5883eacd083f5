"""Validators for what leaves the shop: the merchant's order payload and ACP order events."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "shop" / "spec" / "acp" / "2026-04-17"


def _validator(schema: dict[str, Any], registry: Registry | None = None) -> Draft202012Validator:
    return Draft202012Validator(
        schema, registry=registry or Registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


PAYLOAD_SCHEMA = _validator(json.loads((ROOT / "docs" / "order-payload.schema.json").read_text()))


def _acp_registry() -> Registry:
    """The two OpenAPI documents and the JSON bundle, at URIs their own $refs resolve against."""
    resources = [
        (path.as_uri(), DRAFT202012.create_resource(yaml.safe_load(path.read_text())))
        for path in (
            SPEC / "openapi.agentic_checkout_webhook.yaml",
            SPEC / "openapi.agentic_checkout.yaml",
        )
    ]
    bundle = Resource.from_contents(json.loads((SPEC / "schema.agentic_checkout.json").read_text()))
    return Registry().with_resources([*resources, (bundle.id(), bundle)])


ACP_REGISTRY = _acp_registry()
WEBHOOK_URI = (SPEC / "openapi.agentic_checkout_webhook.yaml").as_uri()
WEBHOOK_EVENT = _validator(
    {"$ref": WEBHOOK_URI + "#/components/schemas/WebhookEvent"}, ACP_REGISTRY
)
BUNDLE_ORDER = _validator(
    {"$ref": "https://example.com/schemas/agentic-checkout/bundle.schema.json#/$defs/Order"},
    ACP_REGISTRY,
)
MERCHANT_SIGNATURE = re.compile(
    ACP_REGISTRY.contents(WEBHOOK_URI)["paths"]["/agentic_checkout/webhooks/order_events"]["post"][
        "parameters"
    ][0]["schema"]["pattern"]
)
