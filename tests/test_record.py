"""The typed cell record: what a cell stores and reports read, versioned, older records migrated."""

from __future__ import annotations

import json
import sqlite3
import warnings

import pytest

from harness.store.record import RECORD_VERSION, CellRecord, TrainFacts
from harness.store.results import SCHEMA_VERSION, ResultStore

#: a record as bench 0.1 wrote it (schema 3: untyped, no version key)
OLD = {
    "identity": {"model": {"name": "tiny-phone-es", "facts": {"pretrained": True, "pretraining_languages": ["es"]}},
                 "protocol": {"name": "superb", "version": "1"}, "seed": 1},
    "model_origin": "bench 0.1.0", "dataset_origin": "bench 0.1.0", "protocol_origin": "bench 0.1.0",
    "data": {"train_hours": 0.05, "source": "synthetic"},
    "skipped": {"test": {"duplicate": 1}},
    "vocabulary": ["<blank>", " ", "a"],
    "train": {"device": "cpu", "precision": "fp32", "updates": 150, "loss_curve": [3.1, 1.2],
              "layer_weights": [0.2, 0.8], "upstream_layers": 2, "eval_seconds": {"test": 1.5}, "my_fact": 7},
    "eval": {"test": {"utterances": 20, "seconds": 31.5}},
    "runtime": {"device": "auto"}, "preset": "tiny-study", "seed": 1, "packages": {"bench": "0.1.0"},
    "git_revision": "abc", "machine": {"cpu": "x"}, "metric_versions": {"cer": "1"},
    "outputs": {"test": {"empty_hypotheses": 0.97}}, "oom_retries": 1, "some_future_key": [1, 2],
}


def test_an_old_record_reads_as_the_typed_record_and_round_trips():
    record = CellRecord.from_json(OLD)
    assert record.version == RECORD_VERSION and record.protocol == "superb" and record.seed == 1
    assert record.train.loss_curve == (3.1, 1.2) and record.train.layer_weights == (0.2, 0.8)
    assert record.train.extra == {"my_fact": 7}  # a protocol's own facts are kept
    assert record.extra == {"some_future_key": [1, 2]}  # and what this version does not know
    assert record.eval["test"].utterances == 20 and record.model_facts["pretraining_languages"] == ["es"]
    assert record.is_blank("test") and record.device == "cpu" and record.oom_retries == 1
    again = CellRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    assert {k: v for k, v in record.to_json().items() if k != "version"} == OLD  # nothing lost or renamed


def test_reading_a_record_by_key_still_works_with_a_deprecation_warning():
    record = CellRecord.from_json(OLD)
    with pytest.warns(DeprecationWarning, match="use its attributes"):
        assert record["train"]["loss_curve"] == [3.1, 1.2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert record.train.updates == 150


def test_a_protocol_that_gives_few_facts_leaves_the_others_unset():
    facts = TrainFacts.from_json({"device": "cpu", "oracle": True})
    assert facts.train_hours is None and facts.updates is None and facts.extra == {"oracle": True}
    assert facts.to_json() == {"device": "cpu", "oracle": True}


def _schema3_store(path):
    with ResultStore(path) as store:
        store.put("k1", model="m", dataset="d", language="es", seed=1, metrics={"test": {"cer": 0.4}},
                  record=OLD, hypotheses={"test": [("u1", "a", "a")]}, duration_s=2.0)
    db = sqlite3.connect(path)
    with db:  # turn it back into what bench 0.1 wrote: schema 3, the untyped record
        db.execute("UPDATE cells SET record=?", (json.dumps(OLD),))
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    db.close()


def test_a_store_of_the_earlier_schema_is_read_and_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    _schema3_store(path)
    with ResultStore(path, readonly=True) as store:  # read-only: read through the type, file untouched
        (cell,) = store.cells()
        assert cell.record.train.loss_curve == (3.1, 1.2)
    assert json.loads(sqlite3.connect(path).execute("SELECT record FROM cells").fetchone()[0]) == OLD
    with ResultStore(path) as store:  # opened to write: migrated once
        (cell,) = store.cells()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    stored = json.loads(db.execute("SELECT record FROM cells").fetchone()[0])
    assert stored["version"] == RECORD_VERSION and CellRecord.from_json(stored) == cell.record
