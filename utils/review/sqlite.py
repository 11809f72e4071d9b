"""SQLite settings that let several reviewers write at once without "database is locked".

* WAL journal: readers never block the writer, and the writer never blocks readers.
* ``busy_timeout``: a writer waits for the lock instead of failing at once.
* ``BEGIN IMMEDIATE`` for write transactions: the write lock is taken when the
  transaction starts. With SQLite's default deferred ``BEGIN``, a transaction that
  reads and then writes can fail with "database is locked" as soon as another writer
  committed in between, whatever the timeout (it cannot upgrade a stale snapshot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from utils.errors import StorageError

#: How long a SQLite writer waits for another writer's lock before giving up.
DEFAULT_BUSY_TIMEOUT_S = 30.0


def prepare_sqlite(engine: Engine, database: str | None, busy_timeout_s: float) -> None:
    """WAL, a busy timeout and ``BEGIN IMMEDIATE`` writes for a SQLite engine.

    Write transactions are those run on ``engine.execution_options(tumorlens_write=True)``.

    Args:
        engine: A new SQLite engine (before its first connection).
        database: The database file (its folder is created), ``None``/``":memory:"``.
        busy_timeout_s: How long a writer waits for the lock.

    Raises:
        StorageError: The database's folder cannot be created.
    """
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(
                f"Cannot create the folder of the review database {database}: {error}"
            ) from error
    timeout_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: the "begin" hook below emits BEGIN itself,
        # so it can choose BEGIN IMMEDIATE (the SQLAlchemy pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get("tumorlens_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
