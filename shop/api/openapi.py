"""GET /openapi.json: the ACP checkout OpenAPI document for registering this store's tools.

ChatGPT's GPT Actions (and other tool-calling platforms) import an OpenAPI document by URL.
This serves the checkout OpenAPI of the newest ACP version the store speaks, unchanged from
shop/spec/acp/<version>/openapi.agentic_checkout.yaml except: `servers` is this store
(config.json storeUrl, else the host the request came to), the bearer scheme is the
document's security requirement (the API keys of SHOP_API_KEYS), and 2026-04-17's Error
lists `supported_versions` as its JSON Schema does. Public: it holds no secret.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from flask import Blueprint, Response, current_app, request

from shop import fast_json
from shop.spec import acp_file
from shop.state import get_state

bp = Blueprint("openapi", __name__)

_CACHE = "shop.openapi"  # app.extensions: {version: the parsed document}


def _spec(version: str) -> dict[str, Any]:
    """The version's checkout OpenAPI, parsed once per app."""
    cache = current_app.extensions.setdefault(_CACHE, {})
    if version not in cache:
        text = acp_file(version, "openapi.agentic_checkout.yaml").read_text(encoding="utf-8")
        cache[version] = yaml.safe_load(text)
    return cache[version]


def document(version: str, server_url: str) -> dict[str, Any]:
    """Return the version's checkout OpenAPI with servers and security set for this store."""
    doc = copy.deepcopy(_spec(version))
    doc["servers"] = [{"url": server_url, "description": "This store's ACP checkout API"}]
    schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the store's API keys (SHOP_API_KEYS).",
    }
    doc["security"] = [{"bearerAuth": []}]
    # Upstream's OpenAPI Error lacks the supported_versions its JSON Schema has (SOURCE.txt);
    # the store sends it on an unsupported API-Version, so the document says so.
    error = doc["components"].get("schemas", {}).get("Error", {}).get("properties")
    if error is not None and version == "2026-04-17":
        error.setdefault(
            "supported_versions",
            {
                "type": "array",
                "items": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                "description": "The API-Version values this store accepts (on 400 "
                "unsupported_api_version).",
            },
        )
    return doc


@bp.get("/openapi.json")
def openapi() -> Response:
    settings = get_state().settings
    server = settings.store_url or request.host_url
    body = document(max(settings.acp_versions), server.rstrip("/"))
    return Response(fast_json.dumps_bytes(body), mimetype="application/json")
