"""The results store: one SQLite row per finished cell, plus its per-utterance hypotheses.

Each cell is written in a single transaction when it finishes, so an interrupted run loses
no finished cell, and a cell whose key is already stored is never computed again.

Several ``bench run`` processes may share one store. Before computing a cell a run claims it
(an atomic insert); the claim carries the owner's host and process id and a heartbeat that
the owner renews. A claim is taken over only when it is stale: its process is gone (same
host) or its heartbeat is older than the lease (another host). Cells that raise are recorded
in a ``failures`` table with their error, and retried only when asked.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import BenchError

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key        TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    language   TEXT NOT NULL,
    seed       INTEGER NOT NULL,
    metrics    TEXT NOT NULL,   -- JSON {split: {metric: value}}
    record     TEXT NOT NULL,   -- JSON: identity, provenance, data and training facts
    finished_at REAL NOT NULL,
    duration_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS hypotheses (
    key        TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE,
    split      TEXT NOT NULL,
    utterance  TEXT NOT NULL,
    reference  TEXT NOT NULL,
    hypothesis TEXT NOT NULL,
    PRIMARY KEY (key, split, utterance)
);
CREATE INDEX IF NOT EXISTS cells_by_name ON cells (model, dataset, language, seed);
CREATE TABLE IF NOT EXISTS claims (
    key        TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,   -- host:pid:random of the claiming run
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    claimed_at REAL NOT NULL,
    heartbeat  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key        TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    language   TEXT NOT NULL,
    seed       INTEGER NOT NULL,
    kind       TEXT NOT NULL,   -- "user" (a BenchError: data or settings), "error" (a bug or crash), "oom"
    message    TEXT NOT NULL,
    detail     TEXT NOT NULL,   -- hint or traceback
    attempts   INTEGER NOT NULL,
    failed_at  REAL NOT NULL
);
"""

#: seconds without a heartbeat after which another host may take a claim over
DEFAULT_LEASE_S = 600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Failure:
    key: str
    model: str
    dataset: str
    language: str
    seed: int
    kind: str
    message: str
    detail: str
    attempts: int
    failed_at: float


@dataclass(frozen=True)
class StoredCell:
    key: str
    model: str
    dataset: str
    language: str
    seed: int
    metrics: dict[str, dict[str, float]]
    record: dict[str, Any]
    finished_at: float
    duration_s: float

    @property
    def protocol(self) -> str:
        """The cell's protocol (cells stored before protocols existed were fine-tuned)."""
        return self.record.get("identity", {}).get("protocol", {}).get("name", "finetune")


class ResultStore:
    def __init__(self, path: str | Path, owner: str | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._db:
                self._db.executescript(_SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise BenchError(f"cannot open the results store {str(self.path)!r}: {exc}",
                             "point run.store at a writable SQLite file (a new path starts an empty store)") from None
        version = int(self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise BenchError(f"results store {str(self.path)!r} was written by a newer bench (schema {version})",
                             "upgrade bench, or use another run.store")
        if version < SCHEMA_VERSION:  # the new tables were created above; nothing else changed
            with self._db:
                self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        self.host = socket.gethostname()
        self.owner = owner or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def done_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        rows = self._db.execute("SELECT key FROM cells").fetchall()
        found = {r[0] for r in rows}
        return found if keys is None else found & set(keys)

    def put(
        self,
        key: str,
        *,
        model: str,
        dataset: str,
        language: str,
        seed: int,
        metrics: Mapping[str, Mapping[str, float]],
        record: Mapping[str, Any],
        hypotheses: Mapping[str, Iterable[tuple[str, str, str]]],
        duration_s: float,
    ) -> None:
        with self._db:  # one transaction: the cell and its hypotheses land together or not at all
            self._db.execute("DELETE FROM failures WHERE key=?", (key,))
            self._db.execute("DELETE FROM claims WHERE key=?", (key,))
            self._db.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?)",
                (key, model, dataset, language, seed, json.dumps(metrics), json.dumps(record, default=str),
                 time.time(), duration_s),
            )
            self._db.execute("DELETE FROM hypotheses WHERE key=?", (key,))
            self._db.executemany(
                "INSERT INTO hypotheses VALUES (?,?,?,?,?)",
                [(key, split, utt, ref, hyp) for split, rows in hypotheses.items() for utt, ref, hyp in rows],
            )

    def update_scores(self, key: str, metrics: Mapping[str, Mapping[str, float]], record: Mapping[str, Any]) -> None:
        """Replace a stored cell's scores and record (metrics scored again from its hypotheses)."""
        with self._db:
            self._db.execute("UPDATE cells SET metrics=?, record=? WHERE key=?",
                             (json.dumps(metrics), json.dumps(record, default=str), key))

    def cells(self, keys: Iterable[str] | None = None) -> list[StoredCell]:
        rows = self._db.execute("SELECT * FROM cells ORDER BY model, dataset, language, seed").fetchall()
        wanted = None if keys is None else set(keys)
        return [
            StoredCell(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7], r[8])
            for r in rows
            if wanted is None or r[0] in wanted
        ]

    def hypotheses(self, key: str, split: str) -> list[tuple[str, str, str]]:
        return self._db.execute(
            "SELECT utterance, reference, hypothesis FROM hypotheses WHERE key=? AND split=? ORDER BY utterance",
            (key, split),
        ).fetchall()

    # ------------------------------------------------------------------ claims
    def claim(self, key: str, lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Claim ``key`` for this store object's owner; False if it is done or held by a live run."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # one writer decides at a time
            if self._db.execute("SELECT 1 FROM cells WHERE key=?", (key,)).fetchone():
                return False
            row = self._db.execute("SELECT owner, host, pid, heartbeat FROM claims WHERE key=?", (key,)).fetchone()
            if row is not None and row[0] != self.owner:
                owner, host, pid, heartbeat = row
                stale = (not _alive(pid)) if host == self.host else (now - heartbeat > lease_s)
                if not stale:
                    return False
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?,?)",
                             (key, self.owner, self.host, os.getpid(), now, now))
            return True

    def heartbeat(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if not keys:
            return
        with self._db:
            self._db.executemany("UPDATE claims SET heartbeat=? WHERE key=? AND owner=?",
                                 [(time.time(), k, self.owner) for k in keys])

    def release(self, key: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM claims WHERE key=? AND owner=?", (key, self.owner))

    # ------------------------------------------------------------------ failures
    def record_failure(self, key: str, *, model: str, dataset: str, language: str, seed: int, kind: str,
                       message: str, detail: str) -> None:
        with self._db:
            row = self._db.execute("SELECT attempts FROM failures WHERE key=?", (key,)).fetchone()
            attempts = (row[0] if row else 0) + 1
            self._db.execute("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?,?,?,?)",
                             (key, model, dataset, language, seed, kind, message, detail, attempts, time.time()))
            self._db.execute("DELETE FROM claims WHERE key=? AND owner=?", (key, self.owner))

    def failures(self, keys: Iterable[str] | None = None) -> list[Failure]:
        rows = self._db.execute("SELECT * FROM failures ORDER BY model, dataset, language, seed").fetchall()
        wanted = None if keys is None else set(keys)
        return [Failure(*r) for r in rows if wanted is None or r[0] in wanted]
