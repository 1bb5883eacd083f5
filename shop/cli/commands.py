"""`flask --app app …` commands: purge, stock, orders, webhooks, check."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from shop import checkout, clock, orders
from shop.checkout import retention, session_rows, stock
from shop.cli import simulate
from shop.cli.check import check_command
from shop.state import get_state
from shop.storage import transaction


def register_commands(app: Flask) -> None:
    """Attach the shop's commands to the app's CLI."""
    app.cli.add_command(purge_command)
    app.cli.add_command(backup_command)
    app.cli.add_command(stock_command)
    app.cli.add_command(orders_group)
    app.cli.add_command(webhooks_group)
    app.cli.add_command(check_command)


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Delete expired checkout sessions and idempotency records older than 24 h."""
    result = retention.purge(get_state())
    click.echo(
        f"deleted {result.sessions} expired session(s) and "
        f"{result.idempotency_records} idempotency record(s); kept "
        f"{result.kept_undelivered} with an undelivered order"
    )


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=True, writable=True))
@with_appcontext
def backup_command(path: str) -> None:
    """Copy the database to PATH while the store runs (SQLite's online backup)."""
    from shop.errors import ConfigError
    from shop.storage.backup import backup_to

    try:
        result = backup_to(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"backed up to {result.path} ({result.size / 2**20:.1f} MB): {result.sessions} "
        f"session(s), {result.undelivered} order message(s) not delivered yet. To restore: "
        "stop the store, copy the file over the database (removing its -wal and -shm "
        "files), start the store, then `flask --app app orders replay --failed` "
        "(docs/deploy.md, Backup and restore)."
    )


@click.command("stock")
@click.argument("item_id", required=False)
@click.argument("quantity", required=False, type=click.IntRange(min=0))
@with_appcontext
def stock_command(item_id: str | None, quantity: int | None) -> None:
    """List live stock, or set ITEM_ID's count to QUANTITY."""
    state = get_state()
    if item_id is not None and quantity is None:
        raise click.UsageError("give both ITEM_ID and QUANTITY to set a count, or neither to list")
    if item_id is not None:
        item = state.catalog.item(item_id)
        if item is None:
            raise click.ClickException(
                f"'{item_id}' is not an item id in {state.settings.products_path}"
            )
        if item.inventory is None:
            raise click.ClickException(
                f"'{item_id}' has unlimited inventory (null in "
                f"{state.settings.products_path}); nothing to set"
            )
        stock.set_stock(item_id, quantity or 0)
        click.echo(f"{item_id}: {quantity}")
        return
    for item_id_, qty in sorted(stock.available_quantities(state.catalog).items()):
        click.echo(f"{item_id_:<32} {'unlimited' if qty is None else qty}")


@click.group("orders", cls=AppGroup)
def orders_group() -> None:
    """Inspect and re-send orders handed to the merchant."""


@orders_group.command("failed")
def orders_failed() -> None:
    """List order messages that have not reached the merchant (or the agent platform)."""
    rows = orders.undelivered()
    if not rows:
        click.echo("every order has been delivered")
    for row in rows:
        kept = ""
        if row.state in orders.STRANDED_STATES:
            kept = f"  kept until {clock.iso(row.next_at + retention.UNDELIVERED_KEEP_SECONDS)}"
        click.echo(
            f"{row.session_id}  {row.order_id}  {row.event} -> {row.destination}  "
            f"{row.state}  attempts={row.attempts}{kept}  {row.last_error or ''}"
        )
    states = {row.state for row in rows}
    if "dropped" in states:
        click.echo(
            "dropped: no orderWebhookUrl was set, so these orders were only logged. Set "
            "orderWebhookUrl in config.json (and ORDER_WEBHOOK_SECRET), restart, then "
            "run `flask --app app orders replay SESSION_ID` for each, or `flask --app app "
            "orders replay --dropped` for all of them."
        )
    if "gave_up" in states:
        click.echo(
            "gave_up: every retry failed. Fix the receiver, then run `flask --app app "
            "orders replay SESSION_ID`. Until then the order is kept for "
            f"{retention.UNDELIVERED_KEEP_DAYS} days, and its payload is in the log line "
            "that gave up."
        )


@orders_group.command("replay")
@click.argument("session_id", required=False)
@click.option(
    "--dropped",
    "all_dropped",
    is_flag=True,
    help="Replay every order dropped for want of orderWebhookUrl.",
)
@click.option(
    "--failed",
    "all_failed",
    is_flag=True,
    help="Replay every order still being retried (after a long receiver outage, now).",
)
@click.option(
    "--gave-up",
    "all_gave_up",
    is_flag=True,
    help="Replay every order whose retries all failed.",
)
@click.option(
    "--unsigned",
    is_flag=True,
    help="Send without a Signature on purpose (only for a store that runs without "
    "ORDER_WEBHOOK_SECRET).",
)
def orders_replay(
    session_id: str | None, all_dropped: bool, all_failed: bool, all_gave_up: bool, unsigned: bool
) -> None:
    """Send SESSION_ID's order again now (same order id: safe for a deduping receiver).

    Or, in bulk: --dropped, --failed, --gave-up (together as you like), oldest first.
    """
    flags = {"dropped": all_dropped, "failed": all_failed, "gave_up": all_gave_up}
    states = [state for state, wanted in flags.items() if wanted]
    if bool(session_id) == bool(states):
        raise click.UsageError(
            "give one SESSION_ID, or any of --dropped, --failed, --gave-up (not both)"
        )
    state = get_state()
    settings = state.settings
    if settings.order_webhook_url and not settings.secret("ORDER_WEBHOOK_SECRET") and not unsigned:
        # A shell without the server's environment would send the order unsigned: the
        # receiver refuses it and the order goes back to failed (issue 15).
        raise click.ClickException(
            "ORDER_WEBHOOK_SECRET is not set in this shell, so the order would go out "
            "unsigned and a receiver that checks signatures would refuse it; run the command "
            "with the store's environment (flask --env-file /etc/shop/env --app app orders "
            "replay …, or `set -a; . /etc/shop/env; set +a` first), or add --unsigned if your "
            "store really sends orders unsigned."
        )
    sessions = orders.sessions_in(*states) if states else [session_id or ""]
    if states and not sessions:
        click.echo(f"no {' or '.join(s.replace('_', ' ') for s in states)} orders")
        return
    rows = [row for session in sessions for row in orders.replay(state, session)]
    if not rows:
        raise click.ClickException(
            f"no order for session '{session_id}' (not completed, or purged)"
        )
    for row in rows:
        click.echo(f"{row.event} {row.order_id} -> {row.destination}: {row.state}")
    if any(row.state == "dropped" for row in rows):
        raise click.ClickException(
            "orderWebhookUrl is still not set in "
            f"{state.settings.config_path}: the order was only logged "
            "again. Set it, restart, and replay."
        )
    if any(row.state != "delivered" for row in rows):
        raise click.ClickException("not every message was delivered; see the log line above")


@click.group("webhooks", cls=AppGroup)
def webhooks_group() -> None:
    """Send signed provider webhooks to a running store (staging checks)."""


@webhooks_group.command("simulate")
@click.argument("provider", type=click.Choice(sorted(simulate.EVENTS)))
@click.argument("event")
@click.option("--session", "session_id", required=True, help="The checkout session (cs_…).")
@click.option(
    "--url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The running store; the event goes to {url}/webhooks/{provider}.",
)
@click.option(
    "--amount",
    type=click.IntRange(min=0),
    help="Amount in minor units instead of the session's total (to test a mismatch).",
)
@click.option("--event-id", help="Event id (repeat one to test duplicate delivery).")
def webhooks_simulate(
    provider: str, event: str, session_id: str, url: str, amount: int | None, event_id: str | None
) -> None:
    """Send PROVIDER's EVENT about a session to the store, signed like the provider signs it.

    \b
    stripe:   payment_intent.succeeded, payment_intent.payment_failed, charge.dispute.created,
              charge.refunded
    razorpay: payment.captured, order.paid, payment.failed, payment.dispute.created,
              refund.processed
    test:     payment.succeeded, payment.failed, payment.disputed, payment.refunded
              (signed with TEST_WEBHOOK_SECRET, else the documented demo secret)
    """
    if event not in simulate.EVENTS[provider]:
        raise click.BadParameter(
            f"'{event}' is not a simulated {provider} event; use one of "
            f"{', '.join(simulate.EVENTS[provider])}.",
            param_hint="EVENT",
        )
    state = get_state()
    variable = simulate.SECRET_VARIABLES[provider]
    secret = state.settings.secret(variable)
    if not secret and provider == "test" and state.provider.name == "test":
        secret = getattr(state.provider, "webhook_secret", None)  # the documented demo secret
    if not secret:
        raise click.ClickException(
            f"{variable} is not set; export the same webhook signing "
            "secret the store verifies with, then run this again."
        )
    if state.provider.name == provider and not getattr(state.provider, "test_mode", True):
        raise click.ClickException(
            f"this store's {provider} keys are live: a simulated payment would complete a real "
            "order without money; run it against a staging store with test keys."
        )
    facts = _session_facts(session_id, amount)
    # End the read transaction: on SQLite it holds the write lock (BEGIN IMMEDIATE), and the
    # store needs that lock to apply the event we are about to send.
    transaction.rollback()
    try:
        signed = simulate.build_event(provider, event, facts, secret, event_id)
        delivery = simulate.post_event(url, signed)
    except simulate.SimulationError as exc:
        raise click.ClickException(str(exc)) from None
    line = f"{provider} {event} {signed.id} -> {delivery.status} {delivery.answer}"
    if not delivery.ok:
        raise click.ClickException(line)
    click.echo(line)


def _session_facts(session_id: str, amount: int | None) -> simulate.SessionFacts:
    row = session_rows.load(session_id)
    if row is None:
        raise click.ClickException(
            f"no checkout session has the id '{session_id}' in this store's database "
            "(SHOP_DATABASE_URL); copy the id from the checkout response, and run this "
            "with the store's environment."
        )
    # What was paid, else the amount of the provider's order, else the session's total now.
    amount = next(
        (a for a in (amount, row.amount_paid, row.provider_order_amount) if a is not None), None
    )
    if amount is None:
        amount = checkout.get_session(get_state(), session_id).quote.total
    return simulate.SessionFacts(
        session_id, amount, row.currency, row.payment_reference, row.provider_order_id
    )
