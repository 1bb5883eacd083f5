"""`flask --app app …` commands: purge, stock, orders."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from shop import delivery, retention, stock
from shop.state import get_state


def register_commands(app: Flask) -> None:
    """Attach the shop's commands to the app's CLI."""
    app.cli.add_command(purge_command)
    app.cli.add_command(stock_command)
    app.cli.add_command(orders_group)


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Delete expired checkout sessions and idempotency records older than 24 h."""
    result = retention.purge()
    click.echo(f"deleted {result.sessions} expired session(s) and "
               f"{result.idempotency_records} idempotency record(s); kept "
               f"{result.kept_undelivered} with an undelivered order")


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
            raise click.ClickException(f"'{item_id}' is not an item id in "
                                       f"{state.settings.products_path}")
        if item.inventory is None:
            raise click.ClickException(f"'{item_id}' has unlimited inventory (null in "
                                       f"{state.settings.products_path}); nothing to set")
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
    rows = delivery.undelivered()
    if not rows:
        click.echo("every order has been delivered")
    for row in rows:
        click.echo(f"{row.session_id}  {row.order_id}  {row.event} -> {row.destination}  "
                   f"{row.state}  attempts={row.attempts}  {row.last_error or ''}")


@orders_group.command("replay")
@click.argument("session_id")
def orders_replay(session_id: str) -> None:
    """Send SESSION_ID's order again now (same order id: safe for a deduping receiver)."""
    rows = delivery.replay(get_state(), session_id)
    if not rows:
        raise click.ClickException(f"no order for session '{session_id}' (not completed, or "
                                   "purged)")
    for row in rows:
        click.echo(f"{row.event} {row.order_id} -> {row.destination}: {row.state}")
    if any(row.state != "delivered" for row in rows):
        raise click.ClickException("not every message was delivered; see the log line above")
