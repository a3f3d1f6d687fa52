"""The sandbox's log store: the CloudWatch Logs tables and the one writer every part of the sandbox logs through.

Lambda writes each invocation's output to ``/aws/lambda/FUNCTION`` and the device
gateway writes AWS IoT's authorization decisions to ``AWSIotLogsV2``
(``iot_logs.py``), both through :class:`LogSink` (``ctx.logs``). The CloudWatch
Logs operations that read and write the same tables are ``services/logs.py``.

Timestamps are epoch milliseconds. Events are ordered by timestamp, then by
arrival (``log_events.id``).

Usage:

>>> from helpers.sandbox.store import Store
>>> sink = LogSink(Store(":memory:", [SCHEMA]))
>>> sink.put_events("/aws/lambda/demo", "2026/11/23/[$LATEST]abc", [(1000, "START RequestId: r1")])
>>> sink.flush(), sink.group_exists("/aws/lambda/demo")
(True, True)
>>> sink.close()
"""
from __future__ import annotations

import logging
import threading
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_groups (
    name TEXT PRIMARY KEY,
    creation_time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_streams (
    group_name TEXT NOT NULL REFERENCES log_groups(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    creation_time INTEGER NOT NULL,
    first_event INTEGER,
    last_event INTEGER,
    last_ingestion INTEGER,
    PRIMARY KEY (group_name, name)
);
CREATE TABLE IF NOT EXISTS log_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name TEXT NOT NULL,
    stream_name TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    ingestion_time INTEGER NOT NULL,
    message TEXT NOT NULL,
    FOREIGN KEY (group_name, stream_name) REFERENCES log_streams(group_name, name) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS log_events_by_group_time ON log_events (group_name, timestamp, id);
CREATE INDEX IF NOT EXISTS log_events_by_stream_time ON log_events (group_name, stream_name, timestamp, id)
"""


def now_ms() -> int:
    return int(time.time() * 1000)


class LogSink:
    """Where the sandbox writes logs (Lambda output, IoT authorization decisions). Thread-safe.

    Writes are queued and committed by one background thread, in batches, so that logging never puts a
    database commit on the request path (a publish or an invoke answers without waiting for the disk).
    Every read of the Logs API calls :meth:`flush` first, so what was logged before a request is always
    visible to it. A crash can lose the last few milliseconds of log lines, never API state.
    """

    def __init__(self, store):
        self.store = store
        self._changed = threading.Condition()
        self._queue: list[tuple[str, str, list[tuple[int, str]]]] = []
        self._pending = 0          # batches queued or being written
        self._cond = threading.Condition()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="log-writer", daemon=True)
        self._writer.start()

    def put_events(self, group: str, stream: str, events: list[tuple[int, str]]) -> None:
        """Queue ``(timestamp_ms, message)`` events; the group and stream are created when missing."""
        batch = (group, stream, [(int(ts), str(msg)) for ts, msg in events])
        with self._cond:
            if self._closed:
                self._write([batch])
                return
            self._queue.append(batch)
            self._pending += 1
            self._cond.notify_all()

    def group_exists(self, group: str) -> bool:
        """True when the log group exists or events for it are queued (Lambda asks before CreateLogGroup)."""
        with self._cond:
            if any(batch[0] == group for batch in self._queue):
                return True
        return self.store.one("SELECT 1 FROM log_groups WHERE name = ?", (group,)) is not None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is in the database; True when it is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self) -> None:
        """Write what is queued and stop the writer thread (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._writer.join(timeout=10)

    #: After waking, the writer waits this long for more events, so a burst becomes one transaction
    #: (fewer commits, and fewer hand-offs of the GIL to and from the request path).
    COALESCE_SECONDS = 0.005

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._closed:
                    self._cond.wait(self.COALESCE_SECONDS)
                batches, self._queue = self._queue, []
                if not batches and self._closed:
                    return
            try:
                self._write(batches)
            except Exception:  # a broken log write must not kill the writer
                logging.getLogger("helpers.sandbox").exception("could not write %d log batches", len(batches))
            with self._cond:
                self._pending -= len(batches)
                self._cond.notify_all()

    def _write(self, batches) -> None:
        now = now_ms()
        merged: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for group, stream, events in batches:  # in order: events of one stream keep their order
            merged.setdefault((group, stream), []).extend(events)
        with self.store.tx() as db:
            for (group, stream), events in merged.items():
                ensure_group(db, group, now)
                ensure_stream(db, group, stream, now)
                insert_events(db, group, stream, events, now)
        self.notify()

    def wait_for_events(self, group: str, after_ms: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for an event in ``group`` timestamped after ``after_ms``; True when there is one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                row = self.store.one("SELECT 1 FROM log_events WHERE group_name = ? AND timestamp > ? LIMIT 1",
                                     (group, int(after_ms)))
                remaining = deadline - time.monotonic()
                if row is not None or remaining <= 0:
                    return row is not None
                self._changed.wait(remaining)

    def notify(self) -> None:
        """Wake :meth:`wait_for_events` callers: events were committed (by the writer, or by PutLogEvents)."""
        with self._changed:
            self._changed.notify_all()


def ensure_group(db, group: str, now: int) -> None:
    db.execute("INSERT OR IGNORE INTO log_groups (name, creation_time) VALUES (?, ?)", (group, now))


def ensure_stream(db, group: str, stream: str, now: int) -> None:
    db.execute("INSERT OR IGNORE INTO log_streams (group_name, name, creation_time) VALUES (?, ?, ?)",
               (group, stream, now))


def insert_events(db, group: str, stream: str, events: list[tuple[int, str]], now: int) -> None:
    if not events:
        return
    db.executemany("INSERT INTO log_events (group_name, stream_name, timestamp, ingestion_time, message) "
                   "VALUES (?, ?, ?, ?, ?)", [(group, stream, ts, now, msg) for ts, msg in events])
    first, last = min(ts for ts, _ in events), max(ts for ts, _ in events)
    db.execute("UPDATE log_streams SET first_event = MIN(COALESCE(first_event, ?), ?), "
               "last_event = MAX(COALESCE(last_event, ?), ?), last_ingestion = ? "
               "WHERE group_name = ? AND name = ?", (first, first, last, last, now, group, stream))
