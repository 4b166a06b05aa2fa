"""The results store: one SQLite row per finished cell, plus its per-utterance hypotheses.

Each cell is written in a single transaction when it finishes, so an interrupted run loses
no finished cell, and a cell whose key is already stored is never computed again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import BenchError

SCHEMA_VERSION = 1
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
"""


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


class ResultStore:
    def __init__(self, path: str | Path) -> None:
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
