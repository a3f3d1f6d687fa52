"""The sandbox's state: one SQLite database in the sandbox home.

Each service module declares the tables it owns in a module-level ``SCHEMA``
string (``CREATE TABLE IF NOT EXISTS ...``); :class:`Store` runs them all at
start-up. Every change goes through :meth:`Store.tx`, one transaction that is
committed (fsync'd, ``synchronous=FULL``) before the API answers, so a crash
never loses an acknowledged change.

Usage:

>>> s = Store(":memory:", ["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)"])
>>> with s.tx() as db:
...     _ = db.execute("INSERT INTO t VALUES ('a', '1')")
>>> s.one("SELECT v FROM t WHERE k = ?", ("a",))["v"]
'1'
>>> s.one("SELECT v FROM t WHERE k = ?", ("zzz",)) is None
True
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

SETTINGS_SCHEMA = "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT)"


class Store:
    def __init__(self, path: str | Path, schemas: Iterable[str] = ()):
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        #: Bumped by every committed transaction: in-memory caches of rows compare it to know they are fresh.
        self.generation = 0
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")  # another connection (the log writer) may hold the write lock
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.tx() as db:
            db.execute(SETTINGS_SCHEMA)
            for ddl in schemas:
                for statement in ddl.split(";"):
                    if statement.strip():
                        db.execute(statement)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: commits on success, rolls back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
                self.generation += 1

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self.one("SELECT value FROM settings WHERE key = ?", (key,))
        return row["value"] if row else default

    def set_setting(self, key: str, value: str | None) -> None:
        with self.tx() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()
