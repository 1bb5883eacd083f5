"""A removed database file is never made again, empty, by a read (issue 16's promise).

Found under load by tests/test_database_failures.py: a read whose statement the fast path does
not take (an expanding IN list, typed columns) went through SQLAlchemy's engine before the
file's identity was checked, and SQLAlchemy opens SQLite files in create mode, so a sweep
right after `rm shop.sqlite3` made a new empty file there, and the store then said the file
had been *replaced* instead of removed.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shop.errors import DatabaseUnavailableError
from shop.storage import read
from shop.storage.compiled_sql import compile_once
from shop.storage.connections import database
from shop.storage.models import OrderDelivery


def test_a_read_on_the_engine_path_after_the_file_was_removed_makes_no_new_file(
    make_app, shop_files
):
    app = make_app()
    # An expanding IN list: compile_once leaves it to SQLAlchemy's engine.
    statement = select(OrderDelivery.id).where(OrderDelivery.state.in_(["pending", "failed"]))
    with app.app_context():
        assert compile_once(statement, database().dialect) is None
        assert read(statement) == []
        shop_files["db"].unlink()  # what `rm instance/shop.sqlite3` does to a running store
        with pytest.raises(DatabaseUnavailableError, match="was removed"):
            read(statement)
    assert not shop_files["db"].exists()
