"""shop: a self-hosted agentic checkout; `create_app()` assembles settings, db, provider, routes."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from random import getrandbits
from typing import Any

from flask import Flask, request
from sqlalchemy.exc import SQLAlchemyError

from shop.config.files import load_files
from shop.config.settings import Settings
from shop.errors import register_error_handlers
from shop.state import ShopState
from shop.storage.database_url import database_error, with_driver

MAX_BODY_BYTES = 1024 * 1024
log = logging.getLogger("shop")


class ShopFlask(Flask):
    """Flask that decides once per function, not on every request, whether it is a coroutine.

    Flask asks `ensure_sync` for every hook and view of every request (about nine times), and
    each ask is an `inspect.iscoroutinefunction`. The answer is remembered per function; a
    coroutine function still goes through `async_to_sync` exactly as in Flask (which, without
    Flask's `async` extra installed, refuses it with Flask's own error when it is called).
    Callables made per request (`after_this_request`) fill at most `_SYNC_CACHE` entries.
    """

    _SYNC_CACHE = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except KeyError:
            found = super().ensure_sync(func)
            if len(self._sync) < self._SYNC_CACHE:
                self._sync[func] = found
            return found
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)


def create_app(overrides: Mapping[str, Any] | None = None, order_sink: Any = None) -> Flask:
    """Build the app. `overrides` may hold environment variables and a `config` dict.

    Raises ConfigError (one sentence naming the file, the field and the fix) when
    config.json, products.json or the environment is wrong.
    """
    overrides = dict(overrides or {})
    config_overrides = overrides.pop("config", None)
    env = {**os.environ, **{k: str(v) for k, v in overrides.items()}}
    settings, catalog = load_files(env, config_overrides)

    app = ShopFlask("shop", instance_path=os.path.abspath("instance"))
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    try:
        app.config["SQLALCHEMY_DATABASE_URI"] = _database_url(settings.database_url)
    except OSError as exc:
        raise database_error(settings.database_url, exc) from None
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": False}

    from shop import orders
    from shop.checkout import stock
    from shop.config.startup import store_is_serving
    from shop.orders.sinks import AcpEventSink, build_sink
    from shop.payments import build_provider
    from shop.storage.models import init_db

    sink = order_sink if order_sink is not None else build_sink(settings, log)
    provider = build_provider(settings)
    agent_url = settings.secret("ACP_WEBHOOK_URL")
    agent_secret = settings.secret("ACP_WEBHOOK_SECRET")
    agent_sink = AcpEventSink(agent_url, agent_secret) if agent_url and agent_secret else None
    app.extensions["shop"] = ShopState(
        settings=settings, catalog=catalog, provider=provider, sink=sink, agent_sink=agent_sink
    )
    try:
        init_db(app, existing=store_is_serving())
        with app.app_context():
            restocked = stock.seed_stock(catalog)
    except (SQLAlchemyError, OSError) as exc:
        raise database_error(settings.database_url, exc) from None
    if restocked:
        log.info("restocked from %s: %s", settings.products_path, ", ".join(restocked))
    if settings.demo_mode:
        log.warning(
            "DEMO MODE: payment provider 'test' and no SHOP_API_KEYS; agents use the "
            "API key 'demo'. Set SHOP_API_KEYS before going live."
        )
    _log_payment_mode(settings, provider)

    register_error_handlers(app)
    from shop.api import body_deadline

    # First hook: a late body is refused at once.
    body_deadline.init_app(app, MAX_BODY_BYTES, settings.body_timeout)
    from shop.api import unavailable  # issue 16: a failing database answers 503 with a sentence

    unavailable.register(app)
    _register_blueprints(app)
    # Before the request-id hook: after_request hooks run last-registered first, so the
    # request log sees the Request-Id that hook sets.
    from shop.api import request_log

    request_log.init_app(app, request_log.json_logs_enabled(settings.secret("SHOP_LOG_FORMAT")))
    _register_request_hooks(app)
    orders.init_app(app)
    from shop.cli.commands import register_commands

    register_commands(app)
    return app


# The variable whose key says test or live, per provider, and the key prefixes worth naming.
_MODE_KEYS = {
    "stripe": ("Stripe", "STRIPE_SECRET_KEY"),
    "razorpay": ("Razorpay", "RAZORPAY_KEY_ID"),
}
_KEY_PREFIX = re.compile(r"(?:sk|rk|rzp)_(?:test|live)_")


def _log_payment_mode(settings: Settings, provider: Any) -> None:
    """Say once at start-up whether the payment provider moves real money."""
    if provider.name == "test":
        if not settings.demo_mode:
            log.warning(
                "payment provider 'test' is offline: the card token decides the "
                "outcome and no real money moves; set paymentProvider in %s before "
                "going live.",
                settings.config_path,
            )
        return
    title, variable = _MODE_KEYS[provider.name]
    # Only the prefix is logged, never the key.
    prefix = _KEY_PREFIX.match(settings.secret(variable) or "")
    kind = f"a {prefix[0]} key" if prefix else "not a test key"
    # WARNING, not INFO: gunicorn shows warnings without any logging set up, and a merchant
    # must see at every start whether real money moves.
    if provider.test_mode:
        log.warning("%s is in test mode (%s is %s): no real money moves", title, variable, kind)
    else:
        log.warning("%s is LIVE (%s is %s): payments move real money", title, variable, kind)


def _database_url(url: str) -> str:
    url = with_driver(url)  # postgresql:// through psycopg 3 (issue 16)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            return "sqlite:///" + os.path.abspath(path)
    return url


def _register_blueprints(app: Flask) -> None:
    from shop.api import acp, ops, status

    app.register_blueprint(acp.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(status.bp)
    for name in ("feeds", "forter", "psp_webhooks", "openapi", "mcp"):
        try:
            module = __import__(f"shop.api.{name}", fromlist=["bp"])
        except ModuleNotFoundError as exc:
            if exc.name != f"shop.api.{name}":
                raise
            continue
        app.register_blueprint(module.bp)


def _register_request_hooks(app: Flask) -> None:
    # Imported here, once per app, not per request: importing retention (the database models
    # and the checkout domain) at the top would make every `import shop` load them all.
    from shop.checkout import retention
    from shop.storage import transaction

    retention.init_app(app)  # issue 16: purging runs in the background, never in a request

    @app.teardown_appcontext
    def _end_unit_of_work(_error: BaseException | None) -> None:
        transaction.reset()  # rolls back a transaction a failure left open; clears its info

    @app.after_request
    def _echo_request_id(response: Any) -> Any:
        # The id is only echoed, so it is made here, once, rather than in a before_request hook.
        # Headers straight from the WSGI environ (what request.headers.get reads, without two
        # proxy lookups and key spellings per request). A made id needs to be unique, not
        # secret: 64 bits of the `random` module (reseeded in every forked worker by Python
        # itself), not a getrandom syscall per request.
        environ = request._get_current_object().environ
        request_id = environ.get("HTTP_REQUEST_ID") or f"req_{getrandbits(64):016x}"
        headers = response.headers
        headers["Request-Id"] = request_id
        # ACP 2026-04-17 echoes Idempotency-Key; every answer to a request carrying one does
        # (errors and replays too), so an agent can match answers to its retries.
        idempotency_key = environ.get("HTTP_IDEMPOTENCY_KEY")
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return response
