"""The ACP checkout-session surface, plus the short /acp/checkout/* routes on the same handlers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from shop import checkout, fast_json
from shop.api import acp_parse
from shop.api.acp_render import PROTOCOL_VERSION, render_session
from shop.api.acp_signing import verify_request
from shop.api.acp_versions import Adapter, adapter_for
from shop.api.idempotency import idempotent
from shop.config.settings import Settings
from shop.errors import InvalidRequestError, ShopError, render_acp_error
from shop.security import bearer_token, constant_time_equals
from shop.state import get_state

bp = Blueprint("acp", __name__)


def json_response(body: Any, status: int = 200) -> Response:
    """Serialize a body as compact UTF-8 JSON."""
    return Response(fast_json.dumps_bytes(body), status=status, mimetype="application/json")


def _authenticate(settings: Settings, headers: Any) -> str:
    """Return the API key's name, or raise 401."""
    token = bearer_token(headers.get("Authorization"))
    if token is None:
        raise ShopError(
            401,
            "invalid_request",
            "unauthorized",
            "Send 'Authorization: Bearer <api key>'; keys are configured in SHOP_API_KEYS.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    for known, name in settings.api_keys.items():
        if constant_time_equals(known, token):
            return name
    raise ShopError(
        401,
        "invalid_request",
        "unauthorized",
        "The bearer token is not one of this store's API keys (SHOP_API_KEYS)."
        + (" In demo mode the key is 'demo'." if settings.demo_mode else ""),
        headers={"WWW-Authenticate": "Bearer"},
    )


def _version(settings: Settings, headers: Any) -> str:
    """The request's API-Version when this store speaks it, else "" (today's shapes, which
    can carry `supported_versions`).

    Set before authentication, so even a 401 answers in the shapes the agent asked for.
    """
    version = headers.get("API-Version", "").strip()
    return version if version in settings.acp_versions else ""


def _adapter() -> Adapter:
    return adapter_for(g._get_current_object().get("acp_version", ""))


def _check_version(settings: Settings, headers: Any) -> None:
    versions = settings.acp_versions
    version = headers.get("API-Version", "").strip()
    if version in versions:
        return
    newest_first = sorted(versions, reverse=True)
    said = f"'{version}' is not supported" if version else "the API-Version header is missing"
    raise InvalidRequestError(
        "unsupported_api_version" if version else "api_version_required",
        f"{said[0].upper()}{said[1:]}; send API-Version: {newest_first[0]}.",
        extra={"supported_versions": newest_first},
    )


# The hooks below take `request` and `g` out of their proxies once: each attribute read through
# a werkzeug LocalProxy costs ~0.7 us, and they were read ~15 times a request.


@bp.before_request
def _guard() -> None:
    current = request._get_current_object()
    if current.endpoint == "acp.discovery":
        return
    settings = get_state().settings
    headers = current.headers
    found = g._get_current_object()
    found.acp_version = _version(settings, headers)
    found.api_key_name = _authenticate(settings, headers)
    _check_version(settings, headers)
    signing_secret = settings.secret("ACP_SIGNING_SECRET")
    if signing_secret:
        # Decoded first: a body too deep (or not JSON) is a 400 before any HMAC is computed.
        verify_request(
            current, signing_secret, _body(), body_only=settings.acp_body_only_signatures
        )


def _scope() -> str:
    return g._get_current_object().get("api_key_name", "anonymous")


def _body() -> dict[str, Any]:
    """The request body as a JSON object, decoded strictly once per request (as sent: the
    idempotency fingerprint is the agent's own body)."""
    found = g._get_current_object()
    body = found.get("acp_body")
    if body is None:
        body = found.acp_body = acp_parse.json_object(request.get_data(cache=True))
    return body


def _request() -> dict[str, Any]:
    """The request body in today's shapes, whatever API-Version it was sent in."""
    return _adapter().request(_body())


def render_error(exc: ShopError) -> Response:
    """Render a ShopError as the flat Error (and status) of the request's API-Version."""
    adapter = _adapter()
    response = render_acp_error(exc, adapter.error)
    response.status_code = adapter.error_statuses.get(exc.code, exc.status)
    return response


def session_response(view: checkout.SessionView, status: int = 200) -> Response:
    """Render a session in the request's API-Version."""
    return json_response(_adapter().session(render_session(get_state(), view)), status)


bp.register_error_handler(ShopError, render_error)

acp_idempotent = idempotent(render_error, _scope, _body)
# For handlers that leave their one transaction to the layer (commit=False).
# Create and update skip the key's look-up unless the provider makes an order on the way.
acp_idempotent_one_transaction = idempotent(
    render_error,
    _scope,
    _body,
    one_transaction=True,
    look_up_first=lambda: get_state().provider.prepares_orders,
)


class _Answer:
    """The answer rendered from the view a handler will return, before its row is written.

    Passed as the domain's `before_write`: the rendering then runs while no write lock is held, not
    inside the transaction that every worker's writes queue behind (docs/decisions.md, issue
    12). An update that must try again calls it again; the last view wins.
    """

    def __init__(self, status: int) -> None:
        self.status = status
        self._rendered: tuple[checkout.SessionView, Response] | None = None

    def __call__(self, view: checkout.SessionView) -> None:
        self._rendered = (view, session_response(view, self.status))

    def given(self, view: checkout.SessionView) -> Response:
        """The answer for the view the handler returned (rendered now if it is another)."""
        if self._rendered is not None and self._rendered[0] is view:
            return self._rendered[1]
        return session_response(view, self.status)


@bp.post("/checkout_sessions")
@bp.post("/acp/checkout/create")
@acp_idempotent_one_transaction
def create_session() -> Response:
    state = get_state()
    answer = _Answer(201)
    view = checkout.create_session(
        state,
        acp_parse.session_input(_request(), creating=True),
        commit=False,
        owner=_scope(),
        before_write=answer,
    )  # committed with the stored response
    return answer.given(view)


@bp.post("/checkout_sessions/<checkout_session_id>")
@bp.patch("/acp/checkout/<checkout_session_id>/update")
@bp.post("/acp/checkout/<checkout_session_id>/update")
@acp_idempotent_one_transaction
def update_session(checkout_session_id: str) -> Response:
    state = get_state()
    answer = _Answer(200)
    view = checkout.update_session(
        state,
        checkout_session_id,
        acp_parse.session_input(_request(), creating=False),
        commit=False,
        owner=_scope(),
        before_write=answer,
    )  # committed with the stored response
    return answer.given(view)


@bp.get("/checkout_sessions/<checkout_session_id>")
@bp.get("/acp/checkout/<checkout_session_id>")
def get_session(checkout_session_id: str) -> Response:
    return session_response(checkout.get_session(get_state(), checkout_session_id, owner=_scope()))


@bp.post("/checkout_sessions/<checkout_session_id>/complete")
@bp.post("/acp/checkout/<checkout_session_id>/complete")
@acp_idempotent
def complete_session(checkout_session_id: str) -> Response:
    body = _request()
    credential = acp_parse.payment_credential(body)
    answer = _Answer(200)
    view = checkout.complete_session(
        get_state(),
        checkout_session_id,
        credential,
        acp_parse.buyer(body.get("buyer")),
        commit=False,
        owner=_scope(),
        offered_handlers_only=True,
        authentication=acp_parse.authentication_result(body),
        before_write=answer,
    )  # a payment's record commits with the stored response (and even if the answer fails)
    return answer.given(view)


@bp.post("/checkout_sessions/<checkout_session_id>/cancel")
@bp.post("/acp/checkout/<checkout_session_id>/cancel")
@acp_idempotent
def cancel_session(checkout_session_id: str) -> Response:
    _body()  # a malformed body is still a 400, even though cancel reads nothing from it
    return session_response(
        checkout.cancel_session(get_state(), checkout_session_id, owner=_scope())
    )


@bp.get("/.well-known/acp.json")
def discovery() -> Response:
    settings = get_state().settings
    versions = sorted(settings.acp_versions)
    return json_response(
        {
            "protocol": {"name": "acp", "version": versions[-1], "supported_versions": versions},
            "api_base_url": request.host_url.rstrip("/"),
            "transports": ["rest", "mcp"],
            "capabilities": {
                "services": ["checkout"],
                "extensions": [{"name": "discount"}],
                "supported_currencies": [settings.currency],
            },
        }
    )


__all__ = ["PROTOCOL_VERSION", "bp", "json_response", "render_error", "session_response"]
