"""`flask --app app check [--online]`: would the store start with these files, this environment?

It reads everything itself and never starts the store (app.py builds a bare app for it), so it
runs the same on a broken file, touches no stock counts, and can be run before every reload.
Every problem is one sentence; the exit status is 1 when there is any. `--online` also asks
the payment provider something harmless with the key and sends a signed test order
(`event: order.test`) to orderWebhookUrl.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from flask import Flask

from shop.config import schema
from shop.config.catalog import load_catalog
from shop.config.files import check_together
from shop.config.jsonfile import load_json_file
from shop.config.settings import Settings, load_settings
from shop.config.strict import all_unknown, nearest
from shop.errors import ConfigError, ProviderError

# Options of `flask` itself that take a value: skipped when finding the command's name.
_FLASK_VALUE_OPTIONS = ("--app", "-A", "--env-file", "-e")


@dataclass(slots=True)
class Report:
    """What `check` found: ok lines, notes (information) and problems (exit 1)."""

    ok: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, sentence: str) -> None:
        if sentence not in self.problems:
            self.problems.append(sentence)


class _Notes(logging.Handler):
    """Collect the warnings start-up would log (no order destination, unsigned orders …)."""

    def __init__(self, report: Report) -> None:
        super().__init__(logging.WARNING)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        self.report.notes.append(record.getMessage())


def run_checks(env: Mapping[str, str], online: bool = False) -> Report:
    """Check config.json, products.json, the environment, the database (and, online, more)."""
    report = Report()
    config_path = env.get("SHOP_CONFIG") or "config.json"
    products_path = env.get("SHOP_PRODUCTS") or "products.json"
    for path, label, variable, shape in (
        (config_path, "config.json", "SHOP_CONFIG", schema.CONFIG),
        (products_path, "products.json", "SHOP_PRODUCTS", None),
    ):
        try:
            data = load_json_file(path, label, variable)
        except ConfigError as exc:
            report.problem(str(exc))
            continue
        for sentence in _unknown_keys(data, path, shape):
            report.problem(sentence)
    _check_environment(env, report)
    settings = _settings(env, report)
    catalog = None
    try:
        catalog = load_catalog(products_path)
        items = len(catalog.items)
        report.ok.append(f"{products_path}: {len(catalog.products)} products, {items} items")
    except ConfigError as exc:
        report.problem(str(exc))
    _database(env, report)
    if settings is None:
        return report
    if catalog is not None:
        try:
            check_together(settings, catalog)
        except ConfigError as exc:
            report.problem(str(exc))
    provider = _provider(settings, report)
    if online:
        _online(settings, provider, report)
    return report


def _unknown_keys(data: Any, path: str, shape: schema.Shape | None) -> list[str]:
    if shape is not None:
        return all_unknown(data, shape, path)
    if isinstance(data, dict):
        found = all_unknown(data, schema.PRODUCTS_FILE, path)
        data, trail = data.get("products"), ("products",)
    else:
        found, trail = [], ()
    for i, product in enumerate(data if isinstance(data, list) else []):
        name = product.get("id") if isinstance(product, dict) else None
        found += all_unknown(product, schema.PRODUCT, path, (*trail, i), f"product '{name}'")
    return found


def _check_environment(env: Mapping[str, str], report: Report) -> None:
    known = [v.name for v in schema.ENVIRONMENT]
    for name in sorted(env):
        if name.startswith(schema.ENV_PREFIXES) and name not in known:
            guess = nearest(name, known)
            hint = f"did you mean {guess}?" if guess else "remove it or fix its name."
            report.problem(f"environment: {name} is not a variable shop reads; {hint}")


def _settings(env: Mapping[str, str], report: Report) -> Settings | None:
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        report.problem(str(exc))
        return None
    mode = (
        "demo mode (API key demo)" if settings.demo_mode else f"{len(settings.api_keys)} API key(s)"
    )
    report.ok.append(
        f"{settings.config_path}: provider {settings.payment_provider}, {mode}, "
        f"currency {settings.currency}"
    )
    return settings


def _provider(settings: Settings, report: Report) -> Any:
    from shop.orders.sinks import build_sink
    from shop.payments import build_provider

    notes = logging.getLogger("shop.check")
    notes.propagate = False
    handler = _Notes(report)
    notes.addHandler(handler)
    try:
        build_sink(settings, notes)
        provider = build_provider(settings)
    except (ConfigError, ValueError) as exc:
        report.problem(str(exc))
        return None
    finally:
        notes.removeHandler(handler)
    if provider.name != "test":
        money = "test mode: no real money moves" if provider.test_mode else "LIVE: real money"
        report.ok.append(f"{provider.name} keys have the right form ({money})")
    return provider


def _database(env: Mapping[str, str], report: Report) -> None:
    from shop.storage.database_url import DEFAULT_DATABASE_URL, check_database_url
    from shop.storage.health import check_database

    try:
        url = check_database_url(env.get("SHOP_DATABASE_URL") or DEFAULT_DATABASE_URL)
    except ConfigError as exc:
        report.problem(str(exc))
        return
    health = check_database(url)
    for sentence in health.problems:
        report.problem(sentence)
    report.notes.extend(health.notes)
    if not health.problems:
        created_later = any("does not exist yet" in note for note in health.notes)
        state = (
            "its folder is writable; the store creates the file at its first start"
            if created_later
            else "reachable, writable"
        )
        report.ok.append(f"database {health.shown_url}: {state}")


def _online(settings: Settings, provider: Any, report: Report) -> None:
    from shop.orders.sinks import DeliveryError, WebhookSink, webhook_timeout
    from shop.payments.key_check import check_provider_key

    if provider is not None:
        try:
            report.ok.append(check_provider_key(settings))
        except ProviderError as exc:
            report.problem(str(exc))
    url = settings.order_webhook_url
    if not url:
        report.notes.append("no orderWebhookUrl: no test order sent.")
        return
    secret = settings.secret("ORDER_WEBHOOK_SECRET")
    if secret is None:
        report.problem(
            "ORDER_WEBHOOK_SECRET is not set in this environment, so the test order would go "
            "unsigned; run check with the store's environment (flask --env-file "
            "/etc/shop/env --app app check --online)."
        )
        return
    token = secrets.token_hex(6)
    order_id = f"order_check_{token}"
    # The shape of a real order (docs/order-payload.schema.json) with nothing paid or to ship.
    order = {
        "event": "order.test",
        "order": {
            "id": order_id,
            "checkout_session_id": f"cs_check_{token}",
            "permalink_url": settings.permalink_base + order_id,
        },
        "buyer": {},
        "currency": settings.currency,
        "line_items": [
            {
                "id": "li_check",
                "item_id": "check",
                "title": "Test order from `flask --app app check --online`: ship nothing",
                "quantity": 1,
                "unit_amount": 0,
                "tax": 0,
                "total": 0,
            }
        ],
        "totals": [{"type": "total", "display_text": "Total", "amount": 0}],
        "fulfillment": None,
        "payment": {"provider": settings.payment_provider, "reference": "check"},
    }
    try:
        WebhookSink(url, secret, webhook_timeout(settings)).deliver(order)
    except (DeliveryError, ValueError) as exc:
        report.problem(f"orderWebhookUrl ({url}) did not take the signed test order: {exc}.")
        return
    report.ok.append(f"orderWebhookUrl ({url}) accepted the signed test order {order_id}")


def print_report(report: Report) -> None:
    """Print the report: ok lines, notes, then every problem."""
    for line in report.ok:
        click.echo(f"ok       {line}")
    for line in report.notes:
        click.echo(f"note     {line}")
    for line in report.problems:
        click.echo(f"PROBLEM  {line}")
    if report.problems:
        click.echo(f"{len(report.problems)} problem(s): fix them before starting or reloading.")
    else:
        click.echo("no problems: safe to start or reload.")


@click.command("check")
@click.option(
    "--online",
    is_flag=True,
    help="Also ask the payment provider with the key, and send a signed test order.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_command(online: bool, as_json: bool) -> None:
    """Check config.json, products.json, the environment and the database; exit 1 on problems."""
    report = run_checks(os.environ, online=online)
    if as_json:
        click.echo(
            json.dumps({"ok": report.ok, "notes": report.notes, "problems": report.problems})
        )
    else:
        print_report(report)
    if report.problems:
        raise SystemExit(1)


def is_check_command(argv: Sequence[str]) -> bool:
    """True when this process is `flask … check …` (app.py then starts no store)."""
    if not argv or os.path.basename(argv[0]) not in ("flask", "__main__.py"):
        return False
    args = iter(argv[1:])
    for arg in args:
        if arg in _FLASK_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg == "check"
    return False


def check_app() -> Flask:
    """Return a bare app that carries only the check command (nothing is opened or seeded)."""
    app = Flask("shop")
    app.cli.add_command(check_command)
    return app


if __name__ == "__main__":  # python -m shop.cli.check [--online]
    check_command(sys.argv[1:])
