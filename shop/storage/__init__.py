"""Storage: the tables and every way to read and write them, SQLite or PostgreSQL.

Public surface (what the layers above use):
- `shop.storage.models`: the tables, `db`, `init_db`;
- `shop.storage.transaction`: every write, commit, rollback and savepoint, with hooks;
- `read` (one SELECT outside any transaction), `rows_of`, `one_of` from this package;
- `shop.storage.expiry` (rows that expire by age), `shop.storage.database_url`.

Internals, imported only inside storage (an import-linter contract checks it):
`compiled_sql` (statements compiled once), `connections` (each thread's SQLite
connections), `sqlite_tuning` (pragmas, the writer queue), `checkpoints` (WAL checkpoints
outside the writer turn).

May import: only the shared modules in shop/ (errors, clock).
"""

from __future__ import annotations

from shop.storage.compiled_sql import one_of, rows_of
from shop.storage.connections import read

__all__ = ["one_of", "read", "rows_of"]
