"""The five ACP checkout tools of the MCP binding (2026-04-17), with fully bundled input schemas.

The binding's OpenRPC file (`openrpc.agentic_checkout.json`) points into the JSON Schema bundle
with relative file references (`../json-schema/schema.agentic_checkout.json#/$defs/…`) and
says implementers MUST resolve them before serving tool schemas. Here every `$ref` is inlined
(the schemas are not recursive), so a tool's `inputSchema` stands alone: an MCP client or an
LLM's tool-calling layer needs no resolver, not even for `#/$defs`. Examples are left out
(they are not validation keywords, and they would double the size of `tools/list`).

Each tool also names the REST request it is: method, path template and whether it has a body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shop.spec import acp_file

BINDING_VERSION = "2026-04-17"
_SCHEMA_FILE = "schema.agentic_checkout.json"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_NOT_SCHEMA = ("example", "examples")


@dataclass(frozen=True, slots=True)
class Route:
    """The REST request a tool call becomes."""

    method: str
    path: str  # with "{id}" where the session id goes
    takes_id: bool
    payload: str  # "required", "optional" or "absent"


ROUTES: dict[str, Route] = {
    "create_checkout_session": Route("POST", "/checkout_sessions", False, "required"),
    "get_checkout_session": Route("GET", "/checkout_sessions/{id}", True, "absent"),
    "update_checkout_session": Route("POST", "/checkout_sessions/{id}", True, "required"),
    "complete_checkout_session": Route(
        "POST", "/checkout_sessions/{id}/complete", True, "required"
    ),
    "cancel_checkout_session": Route("POST", "/checkout_sessions/{id}/cancel", True, "optional"),
}

_ANNOTATIONS = {
    "create_checkout_session": {"readOnlyHint": False, "destructiveHint": False},
    "get_checkout_session": {"readOnlyHint": True},
    "update_checkout_session": {"readOnlyHint": False, "destructiveHint": False},
    "complete_checkout_session": {"readOnlyHint": False, "destructiveHint": False},
    "cancel_checkout_session": {"readOnlyHint": False, "destructiveHint": True},
}


class _Resolver:
    """Inline `$ref`s across the OpenRPC document and the JSON Schema bundle beside it."""

    def __init__(self, openrpc: dict[str, Any], bundle: dict[str, Any]) -> None:
        self.documents = {"openrpc": openrpc, "bundle": bundle}

    def _target(self, ref: str, document: str) -> tuple[str, Any]:
        location, _, pointer = ref.partition("#")
        if location:
            if not location.endswith("/" + _SCHEMA_FILE) and location != _SCHEMA_FILE:
                raise ValueError(f"the MCP binding refers to an unknown file: {ref}")
            document = "bundle"
        node: Any = self.documents[document]
        for part in filter(None, pointer.split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return document, node

    def inline(self, node: Any, document: str, seen: tuple[str, ...] = ()) -> Any:
        """Return `node` with every `$ref` replaced by what it points at."""
        if isinstance(node, list):
            return [self.inline(item, document, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        rest = {
            key: self.inline(value, document, seen)
            for key, value in node.items()
            if key != "$ref" and key not in _NOT_SCHEMA
        }
        if ref is None:
            return rest
        if ref in seen:
            raise ValueError(f"the ACP schema is recursive at {ref}; it cannot be inlined")
        target_document, target = self._target(ref, document)
        resolved = self.inline(target, target_document, (*seen, ref))
        if not rest:
            return resolved
        # `$ref` beside other keywords: both apply (JSON Schema 2020-12), so keep both.
        return {**rest, "allOf": [*rest.get("allOf", []), resolved]}


def build_tools() -> list[dict[str, Any]]:
    """Return the MCP `Tool` objects for the five checkout operations, schemas bundled."""
    openrpc = json.loads(acp_file(BINDING_VERSION, "openrpc.agentic_checkout.json").read_text())
    bundle = json.loads(acp_file(BINDING_VERSION, _SCHEMA_FILE).read_text())
    resolver = _Resolver(openrpc, bundle)
    tools = []
    for method in openrpc["methods"]:
        name = method["name"]
        if name not in ROUTES:
            raise ValueError(f"the MCP binding names a tool this store does not route: {name}")
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in method["params"]:
            schema = resolver.inline(param["schema"], "openrpc")
            if param.get("description"):
                schema = {**schema, "description": param["description"]}
            properties[param["name"]] = schema
            if param.get("required"):
                required.append(param["name"])
        tools.append(
            {
                "name": name,
                "title": method.get("summary", name),
                "description": method.get("description", ""),
                "inputSchema": {
                    "$schema": _DIALECT,
                    "type": "object",
                    "properties": properties,
                    "required": required,
                },
                "annotations": {
                    "title": method.get("summary", name),
                    **_ANNOTATIONS.get(name, {}),
                    "openWorldHint": False,
                },
            }
        )
    missing = set(ROUTES) - {tool["name"] for tool in tools}
    if missing:
        raise ValueError(f"the MCP binding lacks tools this store routes: {sorted(missing)}")
    return tools
