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

import functools
import json
import os
import socket
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import BenchError
from harness.store.record import CellRecord

#: 3: failures record the runtime (device, precision, executor) they happened under;
#: 4: cell records are typed (:class:`harness.store.record.CellRecord`, version 2), older ones migrated
SCHEMA_VERSION = 4
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
    failed_at  REAL NOT NULL,
    runtime    TEXT NOT NULL DEFAULT ''   -- fingerprint of how it was computed ('' = not recorded)
);
"""
_FAILURE_COLUMNS = "key, model, dataset, language, seed, kind, message, detail, attempts, failed_at, runtime"


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
    #: fingerprint of the runtime settings it failed under ("" in stores written before schema 3)
    runtime: str = ""


@dataclass(frozen=True)
class StoredCell:
    key: str
    model: str
    dataset: str
    language: str
    seed: int
    metrics: dict[str, dict[str, float]]
    record: CellRecord
    finished_at: float
    duration_s: float
    #: how its hypotheses were decoded from the model's outputs: ``greedy`` as stored; another
    #: decoder's view of the cell is made by :mod:`harness.decoding.stage` (its ``key`` is then
    #: ``KEY+DECODER`` and ``record.decoding`` says how)
    decoder: str = "greedy"

    def __post_init__(self) -> None:
        if not isinstance(self.record, CellRecord):  # a record given as JSON (its bench 0.1 form included)
            object.__setattr__(self, "record", CellRecord.from_json(self.record))

    @property
    def protocol(self) -> str:
        """The cell's protocol (cells stored before protocols existed were fine-tuned); a view
        decoded otherwise than greedily is labelled ``PROTOCOL+DECODER`` (``finetune+beam-lm``), so
        that every table, statistic and comparison keeps each decoder apart."""
        return self.record.protocol if self.decoder == "greedy" else f"{self.record.protocol}+{self.decoder}"


def _record_json(record: CellRecord | Mapping[str, Any]) -> str:
    if not isinstance(record, CellRecord):
        record = CellRecord.from_json(record)
    return json.dumps(record.to_json(), default=str)


def _store_error(path: Path, problem: str, hint: str | None = None) -> BenchError:
    return BenchError(f"results store {str(path)!r} {problem}",
                      hint or "point run.store (or --store) at a new path or an existing bench store")


def check_store_path(path: Path) -> None:
    """A one-line error for a store path that cannot be a file (a directory, under a file)."""
    if path.is_dir():
        raise _store_error(path, "is a directory", "give a file path, e.g. --store DIR/results.sqlite")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise _store_error(path, f"is under {str(parent)!r}, which is not a directory")
            break


def _is_foreign(db: sqlite3.Connection) -> str | None:
    """Why an SQLite database is not a bench store (None when it is one, or empty)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return None
    if "meta" not in tables or "cells" not in tables:
        return f"is an SQLite database but not a bench results store (its tables: {', '.join(sorted(tables))})"
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        return "is an SQLite database but not a bench results store (no schema_version in its meta table)"
    return None


def _guard(method):
    """Database damage and write refusals become one-line errors naming the store."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if isinstance(exc, sqlite3.IntegrityError) or (
                    isinstance(exc, sqlite3.OperationalError) and "readonly" not in text and "disk I/O" not in text):
                raise  # a constraint, locked and similar: the caller's condition, not damage to the user's file
            raise _store_error(self.path, f"cannot be used: {text}",
                               "restore it from a copy, or point --store at a new file (a new path starts an "
                               "empty store)" if "readonly" not in text else
                               "make the file and its directory writable, or use another --store") from None

    return wrapper


class ResultStore:
    """The results store. ``readonly=True`` (reading commands) opens an existing store with
    SQLite's ``mode=ro`` and changes nothing, so a store on read-only media can be reported.

    A file that is not a bench store (another program's SQLite database, or no database at
    all) is refused before anything is written to it; only a new or empty file gets the schema.
    """

    def __init__(self, path: str | Path, owner: str | None = None, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        check_store_path(self.path)
        exists = self.path.exists()
        if readonly and not exists:
            raise _store_error(self.path, "does not exist", "run `bench run` first (or pass --store)")
        if readonly and self.path.stat().st_size == 0:
            raise _store_error(self.path, "is empty: no results yet", "run `bench run` first (or pass --store)")
        try:
            if exists and self.path.stat().st_size > 0:
                self._db = self._open_readonly()  # look before touching: is it ours?
                problem = _is_foreign(self._db)
                if problem is not None:
                    self._db.close()
                    raise _store_error(self.path, problem,
                                       "bench does not write to other programs' files: pass --store with another path")
                if not readonly:
                    self._db.close()
            if not readonly:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise _store_error(self.path, f"cannot be created: {exc.strerror or exc}",
                                       "point run.store (or --store) at a writable directory") from None
                self._db = sqlite3.connect(self.path, timeout=60)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA foreign_keys=ON")
                with self._db:
                    self._db.executescript(_SCHEMA)
                    self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                     (str(SCHEMA_VERSION),))
            version = int(self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, f"cannot be opened: {exc}",
                               "point run.store at a writable bench store or a new path (a new path starts an "
                               "empty store)") from None
        except OSError as exc:
            raise _store_error(self.path, f"cannot be opened: {exc.strerror or exc}",
                               "point run.store (or --store) at a writable location") from None
        if version > SCHEMA_VERSION:
            raise BenchError(f"results store {str(self.path)!r} was written by a newer bench (schema {version})",
                             "upgrade bench, or use another run.store")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(failures)")}
        self._failure_columns = _FAILURE_COLUMNS if "runtime" in columns else _FAILURE_COLUMNS.replace(
            ", runtime", ", ''")
        if version < SCHEMA_VERSION and not readonly:  # new tables were created above; add new columns
            with self._db:
                if "runtime" not in columns:
                    self._db.execute("ALTER TABLE failures ADD COLUMN runtime TEXT NOT NULL DEFAULT ''")
                    self._failure_columns = _FAILURE_COLUMNS
                if version < 4:  # records of bench 0.1 -> typed records
                    rows = self._db.execute("SELECT key, record FROM cells").fetchall()
                    self._db.executemany("UPDATE cells SET record=? WHERE key=?",
                                         [(_record_json(CellRecord.from_json(json.loads(r))), k) for k, r in rows])
                self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        self.host = socket.gethostname()
        self.owner = owner or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _open_readonly(self) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro"
        if not Path(f"{self.path}-wal").exists():
            # no connection has it open (a WAL writer keeps a -wal file): read it as immutable,
            # which creates no -wal/-shm files beside it (a read-only directory, or another
            # program's database, stays exactly as it was)
            uri += "&immutable=1"
        db = sqlite3.connect(uri, uri=True, timeout=60)
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            # a WAL database in a directory we cannot write (no -shm file to make): read it as
            # immutable, which needs no lock files
            db.close()
            db = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=60)
        return db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_guard
    def done_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        rows = self._db.execute("SELECT key FROM cells").fetchall()
        found = {r[0] for r in rows}
        return found if keys is None else found & set(keys)

    @_guard
    def put(
        self,
        key: str,
        *,
        model: str,
        dataset: str,
        language: str,
        seed: int,
        metrics: Mapping[str, Mapping[str, float]],
        record: CellRecord | Mapping[str, Any],
        hypotheses: Mapping[str, Iterable[tuple[str, str, str]]],
        duration_s: float,
    ) -> None:
        with self._db:  # one transaction: the cell and its hypotheses land together or not at all
            self._db.execute("DELETE FROM failures WHERE key=?", (key,))
            self._db.execute("DELETE FROM claims WHERE key=?", (key,))
            self._db.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?)",
                (key, model, dataset, language, seed, json.dumps(metrics), _record_json(record), time.time(),
                 duration_s),
            )
            self._db.execute("DELETE FROM hypotheses WHERE key=?", (key,))
            self._db.executemany(
                "INSERT INTO hypotheses VALUES (?,?,?,?,?)",
                [(key, split, utt, ref, hyp) for split, rows in hypotheses.items() for utt, ref, hyp in rows],
            )

    @_guard
    def update_scores(self, key: str, metrics: Mapping[str, Mapping[str, float]],
                      record: CellRecord | Mapping[str, Any]) -> None:
        """Replace a stored cell's scores and record (metrics scored again from its hypotheses)."""
        with self._db:
            self._db.execute("UPDATE cells SET metrics=?, record=? WHERE key=?",
                             (json.dumps(metrics), _record_json(record), key))

    @_guard
    def cells(self, keys: Iterable[str] | None = None) -> list[StoredCell]:
        rows = self._db.execute("SELECT * FROM cells ORDER BY model, dataset, language, seed").fetchall()
        wanted = None if keys is None else set(keys)
        return [
            StoredCell(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), CellRecord.from_json(json.loads(r[6])), r[7],
                       r[8])
            for r in rows
            if wanted is None or r[0] in wanted
        ]

    @_guard
    def hypotheses(self, key: str, split: str) -> list[tuple[str, str, str]]:
        return self._db.execute(
            "SELECT utterance, reference, hypothesis FROM hypotheses WHERE key=? AND split=? ORDER BY utterance",
            (key, split),
        ).fetchall()

    @_guard
    def all_hypotheses(self, key: str) -> dict[str, list[tuple[str, str, str]]]:
        """Every split's hypotheses of one cell: {split: [(utterance, reference, hypothesis), ...]}."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        for split, utt, ref, hyp in self._db.execute(
                "SELECT split, utterance, reference, hypothesis FROM hypotheses WHERE key=? "
                "ORDER BY split, utterance", (key,)):
            out.setdefault(split, []).append((utt, ref, hyp))
        return out

    @_guard
    def import_cell(self, cell: StoredCell, hypotheses: Mapping[str, Iterable[tuple[str, str, str]]]) -> None:
        """Store a cell computed elsewhere exactly as it was stored there (its finish time and
        duration included), with its hypotheses; a failure recorded here for its key is dropped."""
        with self._db:
            self._db.execute("DELETE FROM failures WHERE key=?", (cell.key,))
            self._db.execute("INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?)",
                             (cell.key, cell.model, cell.dataset, cell.language, cell.seed, json.dumps(cell.metrics),
                              _record_json(cell.record), cell.finished_at, cell.duration_s))
            self._db.execute("DELETE FROM hypotheses WHERE key=?", (cell.key,))
            self._db.executemany("INSERT INTO hypotheses VALUES (?,?,?,?,?)",
                                 [(cell.key, split, utt, ref, hyp)
                                  for split, rows in hypotheses.items() for utt, ref, hyp in rows])

    @_guard
    def import_failure(self, failure: Failure) -> None:
        """Record a failure from another store as it was recorded there."""
        with self._db:
            self._db.execute(f"INSERT OR REPLACE INTO failures ({_FAILURE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                             (failure.key, failure.model, failure.dataset, failure.language, failure.seed,
                              failure.kind, failure.message, failure.detail, failure.attempts, failure.failed_at,
                              failure.runtime))

    # ------------------------------------------------------------------ claims
    @_guard
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

    @_guard
    def release(self, key: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM claims WHERE key=? AND owner=?", (key, self.owner))

    # ------------------------------------------------------------------ failures
    @_guard
    def record_failure(self, key: str, *, model: str, dataset: str, language: str, seed: int, kind: str,
                       message: str, detail: str, runtime: str = "") -> None:
        """Record that the cell failed; ``runtime`` fingerprints the runtime settings it failed
        under, so that a rerun under other settings computes it again."""
        with self._db:
            row = self._db.execute("SELECT attempts FROM failures WHERE key=?", (key,)).fetchone()
            attempts = (row[0] if row else 0) + 1
            self._db.execute(f"INSERT OR REPLACE INTO failures ({_FAILURE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                             (key, model, dataset, language, seed, kind, message, detail, attempts, time.time(),
                              runtime))
            self._db.execute("DELETE FROM claims WHERE key=? AND owner=?", (key, self.owner))

    @_guard
    def failures(self, keys: Iterable[str] | None = None) -> list[Failure]:
        rows = self._db.execute(f"SELECT {self._failure_columns} FROM failures "
                                "ORDER BY model, dataset, language, seed").fetchall()
        wanted = None if keys is None else set(keys)
        return [Failure(*r) for r in rows if wanted is None or r[0] in wanted]
