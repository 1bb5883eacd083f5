"""The HTTP surfaces: thin blueprints that parse a request, call the checkout domain, render.

Belongs here: routes, headers, status codes, the JSON shapes of each protocol version (ACP
REST, the short routes, Forter), request decoding (`json_body`), request signatures
(`acp_signing`), the Idempotency-Key layer (`idempotency`, `fingerprint`), feeds' HTTP side,
provider webhooks' HTTP side, and operations (`ops`: healthz, metrics; `status`: the
merchant's /status page; `request_log`: request timing and JSON logs).

May import: everything below it (checkout, orders, payments, pricing, feeds, config, the
public surface of storage) and the shared modules in shop/. Nothing imports api but
create_app.
"""
