"""bench merge: stores computed on machines that share no disk, united by cell key."""

from __future__ import annotations

import json
import shutil

import pytest

from harness.store.merge import merge_stores
from harness.store.results import ResultStore


def _put(path, key, cer, model="m1", language="de", hyp="hallo welt", machine="laptop"):
    with ResultStore(path) as store:
        store.put(key, model=model, dataset="synthetic", language=language, seed=0,
                  metrics={"test": {"cer": cer, "wer": 2 * cer}}, record={"machine": {"host": machine}},
                  hypotheses={"test": [("u1", "hallo welt", hyp)], "dev": [("d1", "ja", "ja")]}, duration_s=1.5)


def _fail(path, key, message="boom"):
    with ResultStore(path) as store:
        store.record_failure(key, model="m3", dataset="synthetic", language="es", seed=0, kind="error",
                             message=message, detail="Traceback ...", runtime="cpu")


def _dump(path):
    with ResultStore(path, readonly=True) as store:
        return ({c.key: (c.model, c.language, c.metrics, c.record, c.finished_at, c.duration_s,
                         store.all_hypotheses(c.key)) for c in store.cells()},
                {f.key: (f.kind, f.message, f.attempts, f.failed_at, f.runtime) for f in store.failures()})


def test_cells_are_united_by_key_and_identical_duplicates_kept_once(tmp_path):
    a, b, c = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "c.sqlite"
    _put(a, "k1", 0.30, machine="laptop")
    _put(a, "k2", 0.40, model="m2", machine="laptop")
    _put(b, "k2", 0.40, model="m2", machine="cluster")  # the same result, computed elsewhere
    _put(b, "k3", 0.50, language="es", machine="cluster")
    _fail(a, "k4")  # failed on the laptop, nowhere computed: kept
    _fail(b, "k1", "oom on the cluster")  # failed on the cluster, but the laptop has its result: dropped

    summary = merge_stores([a, b], c)
    assert (summary.added, summary.duplicates, summary.conflicts) == (3, 1, ())
    assert (summary.failures_kept, summary.failures_superseded, summary.cells_in_target) == (1, 1, 3)
    cells, failures = _dump(c)
    cells_a, failures_a = _dump(a)
    cells_b, _ = _dump(b)
    assert cells == {"k1": cells_a["k1"], "k2": cells_a["k2"], "k3": cells_b["k3"]}  # exactly as stored there
    assert cells["k2"][3].machine == {"host": "laptop"}  # the first store's provenance for a duplicate
    assert failures == {"k4": failures_a["k4"]}

    again = merge_stores([a, b], c)  # merging again changes nothing
    assert (again.added, again.duplicates, again.conflicts, again.cells_in_target) == (0, 4, (), 3)
    assert _dump(c) == (cells, failures)


def test_conflicting_results_are_reported_and_never_written(tmp_path, bench):
    a, b, c = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "c.sqlite"
    _put(a, "k1", 0.30)
    _put(b, "k1", 0.31, hyp="hallo walt")  # the same cell, another answer
    _put(b, "k2", 0.50, model="m2")
    code, out, err = bench("merge", str(a), str(b), "--into", str(c))
    assert code == 1
    assert "1 cell(s) added, 0 identical duplicate(s) skipped, 1 conflict(s)" in out
    assert "m1 / synthetic:de / seed 0 [key k1]" in err
    assert f"{a}: cer=0.3000 wer=0.6000" in err and f"{b}: cer=0.3100 wer=0.6200, 1 hypotheses differ" in err
    assert "--keep-first" in err
    cells, _ = _dump(c)
    assert set(cells) == {"k2"}  # neither version of k1

    code, out, err = bench("merge", str(b), str(a), "--into", str(c), "--keep-first")
    assert code == 1 and "1 conflict(s)" in out
    cells, _ = _dump(c)
    assert cells["k1"][2]["test"]["cer"] == 0.31  # b was listed first

    _put(a, "k2", 0.55, model="m2")  # conflicts with what the target holds: the target keeps its own
    code, out, err = bench("merge", str(a), "--into", str(c), "--keep-first")
    assert code == 1 and "unchanged" in err
    assert _dump(c)[0]["k2"][2]["test"]["cer"] == 0.50


def test_bad_merge_arguments_are_one_line_errors(tmp_path, bench):
    a = tmp_path / "a.sqlite"
    _put(a, "k1", 0.3)
    code, _, err = bench("merge", str(a), str(tmp_path / "missing.sqlite"), "--into", str(tmp_path / "c.sqlite"))
    assert code == 2 and "missing.sqlite' (to merge) does not exist" in err and "hint:" in err
    assert not (tmp_path / "c.sqlite").exists()  # nothing written before every source was read
    code, _, err = bench("merge", str(a), "--into", str(a))
    assert code == 2 and "is both a store to merge and the target" in err
    (tmp_path / "notes.txt").write_text("not a database")
    code, _, err = bench("merge", str(tmp_path / "notes.txt"), "--into", str(tmp_path / "c.sqlite"))
    assert code == 2 and "error: results store" in err


@pytest.mark.slow
def test_report_of_merged_stores_equals_the_report_of_one_store(bench, small_config, tmp_path):
    """Machines compute overlapping parts of the matrix; the merged store reports exactly
    what one store holding every cell reports."""
    config = str(small_config)
    one = ("--set", "run.threads=1")
    assert bench("run", "--config", config, "--store", str(tmp_path / "one.sqlite"), *one)[0] == 0
    assert bench("run", "--config", config, "--store", str(tmp_path / "laptop.sqlite"), "--langs", "de", *one)[0] == 0
    assert bench("run", "--config", config, "--store", str(tmp_path / "cluster.sqlite"), "--langs", "es", *one)[0] == 0
    assert bench("run", "--config", config, "--store", str(tmp_path / "again.sqlite"), "--langs", "de",
                 "--models", "tiny-hubert", *one)[0] == 0  # a cell computed on two machines
    code, out, err = bench("merge", *(str(tmp_path / f"{name}.sqlite") for name in ("laptop", "cluster", "again")),
                           "--into", str(tmp_path / "merged.sqlite"))
    assert code == 0, err
    assert "4 cell(s) added, 1 identical duplicate(s) skipped, 0 conflict(s)" in out

    reports = {}
    for name in ("one", "merged"):
        code, out, err = bench("report", "--config", config, "--store", str(tmp_path / f"{name}.sqlite"),
                               "--out", str(tmp_path / f"report-{name}"), "--json", str(tmp_path / f"{name}.json"))
        assert code == 0, err
        assert "4 of 4 cells have results" in out
        results = json.loads((tmp_path / f"{name}.json").read_text())
        # when and how fast each cell was computed differs between two computations; the rest must not
        results.pop("generated_at"), results.pop("cost"), results["header"].pop("ran")
        for cell in results["cells"]:
            cell.pop("duration_s"), cell.pop("finished_at")
        results = json.dumps(results, sort_keys=True)  # NaN (unknown facts) compares equal as text
        tables = {p.name: p.read_text() for p in sorted((tmp_path / f"report-{name}").glob("*.csv"))}
        reports[name] = (results, tables)
    assert reports["merged"][1] and reports["merged"] == reports["one"]
