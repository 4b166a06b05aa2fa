"""What a new user, a plugin author and a CI pipeline hit first (issue 16): settings that cannot
give a meaningful result, runtime failures that must not stick, other people's files, read-only
and damaged stores, --metrics, Ctrl-C during pre-training."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from harness.plan.config import load_config, runtime_fingerprint
from harness.errors import BenchError
from harness.store.results import ResultStore

ONE_CELL = ("--models", "tiny-wav2vec2", "--langs", "de")


@pytest.fixture(scope="module")
def stored(tmp_path_factory, cache_dir) -> Path:
    """A store holding one computed cell (tiny-wav2vec2 on de, 3 updates), made once."""
    from harness.cli.main import main
    from conftest import SMALL_TOML

    root = tmp_path_factory.mktemp("stored")
    (root / "bench.toml").write_text(SMALL_TOML)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE_DIR", str(cache_dir))
        assert main(["run", "--config", str(root / "bench.toml"), "--no-progress", *ONE_CELL]) == 0
    return root


def _copy_store(stored: Path, tmp_path: Path) -> Path:
    """The module's store (and its config) copied to tmp_path; returns the config's path."""
    (tmp_path / "bench.toml").write_text((stored / "bench.toml").read_text())
    with ResultStore(stored / "results.sqlite", readonly=True) as source:
        db = sqlite3.connect(tmp_path / "results.sqlite")
        source._db.backup(db)
        db.close()
    return tmp_path / "bench.toml"


# --------------------------------------------------------------------------- 1c
def test_settings_without_a_meaningful_result_are_refused(bench, small_config):
    for args, message in [
        (("--set", "train.steps=0"), "train.steps must be >= 1"),
        (("--set", "run.seeds=[0, -1]"), "negative seed(s) -1"),
        (("--set", "datasets.synthtic.train_minutes=1"), "[datasets.synthtic] names no registered dataset. "
                                                         "Did you mean 'synthetic'?"),
        (("--set", "models.tiny-wav2vec.layerdrop=0.1"), "[models.tiny-wav2vec] names no registered model"),
        (("--set", "executors.lcal.workers=1"), "[executors.lcal] names no registered executor"),
    ]:
        code, out, err = bench("run", "--config", str(small_config), "--dry-run", *args)
        assert code == 2 and message in err and "hint:" in err, (args, err)
    assert not (small_config.parent / "results.sqlite").exists()


def test_sections_of_installed_but_unselected_plugins_are_fine(bench, small_config):
    code, out, err = bench("run", "--config", str(small_config), "--dry-run",
                           "--set", "datasets.common_voice.train_hours=1", "--set", "models.tiny-wavlm.layerdrop=0.1",
                           "--set", "executors.ray.num_cpus=1")
    assert code == 0, err


def test_compare_never_reports_ok_on_nothing_compared(bench, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"summary": []}))
    row = {"model": "m", "dataset": "d", "language": "de", "split": "test", "metric": "cer", "mean": 0.5}
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"summary": [row]}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"summary": [{**row, "model": "n"}]}))
    code, out, err = bench("compare", str(empty), str(one))
    assert code == 2 and "holds no results" in err and "OK" not in out
    code, out, err = bench("compare", str(one), str(other), "--allow-missing")
    assert code == 1 and "no cell was compared" in err and "OK" not in out
    code, out, err = bench("compare", str(one), str(one))
    assert code == 0 and "OK" in out


# --------------------------------------------------------------------------- 2
def test_runtime_settings_fail_before_any_work(bench, small_config, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")

    def no_pretraining(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("pre-training started before the runtime was checked")

    monkeypatch.setattr("harness.run.runner.prepare_models", no_pretraining)
    for args in (("--set", "run.device=cuda"), ("--set", "run.device=cuda:3"), ("--set", "run.precision=fp16"),
                 ("--set", "run.device=tpu"), ("--set", "run.executor=lcal"), ("--set", "executors.local.wrkers=2")):
        for command in ("run", "pretrain"):
            code, out, err = bench(command, "--config", str(small_config), "--models", "tiny-phone-es", *args)
            assert code == 2 and err.startswith("error: ") and "hint:" in err and "Traceback" not in err, (args, err)
    assert not (small_config.parent / "results.sqlite").exists()


def test_a_failure_under_one_runtime_does_not_block_another(bench, stored, tmp_path):
    config_path = _copy_store(stored, tmp_path)
    (tmp_path / "bench.toml").write_text(config_path.read_text().replace("seeds = 1", "seeds = [7]"))
    config = load_config(config_path, None, {"run": {"models": "tiny-wav2vec2", "langs": "de"}})
    from harness.plugins import load_registry
    from harness.run.runner import plan_run

    (planned,) = plan_run(config, load_registry()).cells
    cuda = load_config(config_path, None, {"run": {"models": "tiny-wav2vec2", "langs": "de", "device": "cuda"}})
    assert runtime_fingerprint(cuda) != runtime_fingerprint(config)
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.record_failure(planned.key, model="tiny-wav2vec2", dataset="synthetic", language="de", seed=7,
                             kind="user", message="device 'cuda' was asked for but CUDA is not available here",
                             detail="use auto", runtime=runtime_fingerprint(cuda))
    code, out, err = bench("run", "--config", str(config_path), "--dry-run", *ONE_CELL)
    assert code == 0 and "to compute" in out and "failed" not in out
    code, out, err = bench("run", "--config", str(config_path), "--no-progress", *ONE_CELL)
    assert code == 0 and "1 cells computed" in out, err
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert store.failures() == []
        # under the same runtime a failure still sticks until --retry-failed
        store.record_failure("k", model="m", dataset="d", language="de", seed=0, kind="error", message="x",
                             detail="y", runtime=runtime_fingerprint(config))
        assert store.failures()[0].runtime == runtime_fingerprint(config)


def test_old_stores_get_the_runtime_column(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2');
        CREATE TABLE cells (key TEXT PRIMARY KEY, model TEXT NOT NULL, dataset TEXT NOT NULL, language TEXT NOT NULL,
            seed INTEGER NOT NULL, metrics TEXT NOT NULL, record TEXT NOT NULL, finished_at REAL NOT NULL,
            duration_s REAL NOT NULL);
        CREATE TABLE failures (key TEXT PRIMARY KEY, model TEXT NOT NULL, dataset TEXT NOT NULL,
            language TEXT NOT NULL, seed INTEGER NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
            detail TEXT NOT NULL, attempts INTEGER NOT NULL, failed_at REAL NOT NULL);
        INSERT INTO failures VALUES ('k', 'm', 'd', 'de', 0, 'user', 'old', 'hint', 1, 0.0);
    """)
    db.commit()
    db.close()
    with ResultStore(path, readonly=True) as store:  # readable as it is
        (failure,) = store.failures()
        assert failure.message == "old" and failure.runtime == ""
    with ResultStore(path) as store:  # migrated when opened for writing
        store.record_failure("k2", model="m", dataset="d", language="es", seed=0, kind="user", message="new",
                             detail="", runtime="abc")
        assert [f.runtime for f in store.failures()] == ["", "abc"]


# --------------------------------------------------------------------------- 4
def test_damaged_store_is_one_line(bench, stored, tmp_path):
    config_path = _copy_store(stored, tmp_path)
    path = tmp_path / "results.sqlite"
    data = bytearray(path.read_bytes())
    page = 4096
    data[page:] = bytes([0x5A]) * (len(data) - page)  # every page after the schema's
    path.write_bytes(bytes(data))
    for command in (("report",), ("run", "--no-progress"), ("failures",), ("run", "--dry-run")):
        code, out, err = bench(*command, "--config", str(config_path), *ONE_CELL)
        assert code == 2 and "error: results store" in err and "hint:" in err and "Traceback" not in err, (command,
                                                                                                          err)
    assert path.read_bytes() == bytes(data)


def test_pretrain_interrupted_exits_130_and_leaves_nothing_half_written(bench, small_config, monkeypatch, tmp_path):
    from plugins.models.pretrained import checkpoints

    def interrupted_save(model, directory):
        directory.mkdir(parents=True)
        (directory / "config.json").write_text("{")  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save_checkpoint", interrupted_save)
    target = tmp_path / "pretrained" / "model"
    with pytest.raises(KeyboardInterrupt):
        checkpoints.write_checkpoint(object(), {}, target)
    assert not target.exists() and list(target.parent.iterdir()) == []

    def interrupted(context):
        raise KeyboardInterrupt

    from harness.plugins import Registry

    original = Registry.collect

    def collect(self):
        original(self)
        reg = self.models["tiny-phone-es"]
        import dataclasses

        self.models["tiny-phone-es"] = dataclasses.replace(reg, spec=dataclasses.replace(reg.spec, prepare=interrupted))
        return self

    monkeypatch.setattr(Registry, "collect", collect)
    code, out, err = bench("pretrain", "--config", str(small_config), "--models", "tiny-phone-es", "--no-progress")
    assert code == 130 and "interrupted" in err and "Traceback" not in err


# --------------------------------------------------------------------------- 5
def _foreign_database(path: Path) -> bytes:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    db.execute("INSERT INTO invoices VALUES (1, 9.5)")
    db.commit()
    db.close()
    return path.read_bytes()


def test_a_foreign_sqlite_database_is_refused_untouched(bench, small_config, tmp_path):
    path = tmp_path / "accounts.db"
    before = _foreign_database(path)
    for command in (("run", "--dry-run"), ("run", "--no-progress"), ("report",), ("failures",)):
        code, out, err = bench(*command, "--config", str(small_config), "--store", str(path), *ONE_CELL)
        assert code == 2 and "not a bench results store" in err and "hint:" in err, (command, err)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("accounts")) == ["accounts.db"]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


def test_dry_run_creates_no_files(bench, small_config, tmp_path, monkeypatch):
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    before = sorted(p.name for p in small_config.parent.iterdir())
    code, out, err = bench("run", "--config", str(small_config), "--dry-run", "--store", str(tmp_path / "s" / "r.sqlite"))
    assert code == 0, err
    assert "to compute" in out
    assert sorted(p.name for p in small_config.parent.iterdir()) == before and not cache.exists()


def test_a_read_only_store_can_be_reported(bench, stored, tmp_path):
    config_path = _copy_store(stored, tmp_path)
    store_dir = tmp_path / "ro"
    store_dir.mkdir()
    path = store_dir / "results.sqlite"
    (tmp_path / "results.sqlite").rename(path)
    before = path.read_bytes()
    path.chmod(0o444)
    store_dir.chmod(0o555)
    try:
        for command in (("report", "--out", str(tmp_path / "reports")), ("failures",), ("run", "--dry-run")):
            code, out, err = bench(*command, "--config", str(config_path), "--store", str(path), *ONE_CELL)
            assert code == 0, (command, err)
        assert path.read_bytes() == before
        assert sorted(p.name for p in store_dir.iterdir()) == ["results.sqlite"] or os.geteuid() == 0
    finally:
        store_dir.chmod(0o755)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_readonly_store_object_changes_nothing(stored, tmp_path):
    _copy_store(stored, tmp_path)
    path = tmp_path / "results.sqlite"
    before = path.read_bytes()
    with ResultStore(path, readonly=True) as store:
        assert len(store.cells()) == 1
        with pytest.raises(BenchError, match="cannot be used: attempt to write a readonly database"):
            store.record_failure("k", model="m", dataset="d", language="de", seed=0, kind="user", message="x",
                                 detail="")
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- 6
def test_metrics_flag(bench, stored, tmp_path):
    config_path = _copy_store(stored, tmp_path)
    code, out, err = bench("report", "--config", str(config_path), *ONE_CELL, "--metrics", "wer",
                           "--out", str(tmp_path / "reports"), "--json", str(tmp_path / "wer.json"))
    assert code == 0, err
    assert "WER on test" in out and "CER on test" not in out
    assert "wer" in {row["metric"] for row in json.loads((tmp_path / "wer.json").read_text())["summary"]}
    code, out, err = bench("compare", str(tmp_path / "wer.json"), "--config", str(config_path), *ONE_CELL,
                           "--metrics", "wer")
    assert code == 0 and "OK" in out, err
    code, out, err = bench("run", "--config", str(config_path), *ONE_CELL, "--metrics", "cre", "--dry-run")
    assert code == 2 and "unknown metric 'cre'. Did you mean 'cer'" in err


# --------------------------------------------------------------------------- 8 (options)
def test_model_options_are_declared_and_checked_before_any_cell(bench, small_config):
    from harness.plugins import load_registry

    registry = load_registry()
    for name in ("tiny-wav2vec2", "tiny-phone-es", "xls-r", "no-pretraining", "hf:/some/dir"):
        assert "layerdrop" in registry.model(name).spec.options
    assert "pretrain_steps" in registry.model("tiny-phone-es").spec.options
    code, out, err = bench("run", "--config", str(small_config), "--dry-run", *ONE_CELL,
                           "--set", "models.tiny-wav2vec2.layerdrp=0.1")
    assert code == 2 and "unknown option 'layerdrp'. Did you mean 'layerdrop'?" in err and "hint:" in err
    code, out, err = bench("run", "--config", str(small_config), "--dry-run", *ONE_CELL,
                           "--set", "models.tiny-wav2vec2.layerdrop=0.1")
    assert code == 0, err
