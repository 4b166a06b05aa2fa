"""The results store: SQLite rows of finished cells (:mod:`harness.store.results`) and the typed
record each cell keeps (:mod:`harness.store.record`)."""

from harness.store.results import DEFAULT_LEASE_S, SCHEMA_VERSION, Failure, ResultStore, StoredCell

__all__ = ["DEFAULT_LEASE_S", "SCHEMA_VERSION", "Failure", "ResultStore", "StoredCell"]
