"""A walk through bad inputs a new user, a plugin author or a CI pipeline gives bench: configs,
flags, stores, baselines and plugins. For each: the documented exit status (2 for a user error),
one ``error:`` line and one ``hint:`` line, no traceback, and every file there (the store, the
config, other programs' files) byte-identical afterwards, with no file created."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import torch

from conftest import SMALL_TOML, install_fake_distribution

CUDA = torch.cuda.is_available()

CLASHING_PLUGIN = """
from harness.api import MetricSpec
from harness.hookspecs import hookimpl

@hookimpl
def bench_register_metrics(register):
    register(MetricSpec("cer", lambda refs, hyps: 0.0))
"""

RAISING_PLUGIN = """
from harness.hookspecs import hookimpl

@hookimpl
def bench_register_models(register):
    raise ValueError("the plugin's own bug")
"""

#: (id, arguments, expected exit status, text the error names); {cfg}, {dir}, {store}, ... are
#: filled in with the files _workspace makes
CASES: list[tuple[str, tuple[str, ...], int, str]] = [
    # ---- settings
    ("steps-zero", ("run", "--set", "train.steps=0"), 2, "train.steps must be >= 1"),
    ("steps-negative", ("run", "--set", "train.steps=-3"), 2, "train.steps must be >= 1"),
    ("steps-text", ("run", "--set", "train.steps=many"), 2, "train.steps must be an integer"),
    ("negative-seed", ("run", "--set", "run.seeds=[0, -1]"), 2, "negative seed"),
    ("seeds-zero", ("run", "--seeds", "0"), 2, "run.seeds must be a positive count"),
    ("seeds-word", ("run", "--seeds", "three"), 2, "run.seeds must be a positive count"),
    ("section-scalar", ("run", "--set", "train=5"), 2, "[train] is a section"),
    ("run-scalar", ("run", "--set", "run=5"), 2, "[run] is a section"),
    ("setting-under-value", ("run", "--set", "train.steps=5", "--set", "train.steps.x=1"), 2, "train.steps"),
    ("set-without-equals", ("run", "--set", "train.steps"), 2, "not of the form SECTION.KEY=VALUE"),
    ("unknown-setting", ("run", "--set", "train.stepz=10"), 2, "unknown setting 'stepz'. Did you mean 'steps'"),
    ("unknown-section", ("run", "--set", "trian.steps=10"), 2, "unknown setting 'trian'"),
    ("lr-zero", ("run", "--set", "train.lr=0"), 2, "train.lr must be > 0"),
    ("schedule-over-one", ("run", "--set", "train.warmup=0.8", "--set", "train.hold=0.5"), 2, "train.warmup"),
    ("precision-typo", ("run", "--set", "run.precision=fp8"), 2, "run.precision"),
    ("feature-cache-typo", ("run", "--set", "run.feature_cache=maybe"), 2, "run.feature_cache"),
    ("dataset-section-typo", ("run", "--set", "datasets.synthtic.train_minutes=1"), 2,
     "[datasets.synthtic] names no registered dataset. Did you mean 'synthetic'"),
    ("model-section-typo", ("run", "--set", "models.tiny-wav2vec.layerdrop=0.1"), 2,
     "[models.tiny-wav2vec] names no registered model"),
    ("executor-section-typo", ("run", "--set", "executors.lcal.workers=1"), 2,
     "[executors.lcal] names no registered executor"),
    ("model-option-typo", ("run", "--set", "models.tiny-wav2vec2.layerdrp=0.1"), 2,
     "unknown option 'layerdrp'. Did you mean 'layerdrop'"),
    ("dataset-option-typo", ("run", "--set", "datasets.synthetic.train_minute=1"), 2, "unknown option"),
    ("executor-option-typo", ("run", "--set", "executors.local.wrkers=2"), 2, "unknown option 'wrkers'"),
    ("executor-name-typo", ("run", "--executor", "lcal"), 2, "unknown executor 'lcal'"),
    ("device-unknown", ("run", "--set", "run.device=quantum"), 2, "device"),
    ("device-cuda", ("run", "--set", "run.device=cuda"), 2, "CUDA is not available"),
    ("device-cuda-index", ("run", "--set", "run.device=cuda:7"), 2, "cuda:7"),
    ("fp16-on-cpu", ("run", "--set", "run.precision=fp16", "--set", "run.device=cpu"), 2, "fp16"),
    ("pretrain-on-missing-cuda", ("pretrain", "--models", "tiny-phone-es", "--set", "run.device=cuda"), 2, "CUDA"),
    ("model-typo", ("run", "--models", "tiny-wav2vec"), 2, "unknown model 'tiny-wav2vec'"),
    ("language-typo", ("run", "--langs", "xx"), 2, "has no language 'xx'"),
    ("dataset-typo", ("run", "--datasets", "synthtc"), 2, "unknown dataset 'synthtc'"),
    ("metric-typo", ("run", "--metrics", "cre"), 2, "unknown metric 'cre'"),
    ("report-metric-typo", ("report", "--metrics", "cre"), 2, "unknown metric 'cre'"),
    ("preset-typo", ("run", "--preset", "smok"), 2, "unknown preset 'smok'"),
    ("empty-models", ("run", "--models", ","), 2, "run.models is empty"),
    # ---- config files
    ("config-directory", ("run", "--config", "{dir}"), 2, "is a directory"),
    ("config-missing", ("run", "--config", "{dir}/nothing.toml"), 2, "does not exist"),
    ("config-not-toml", ("run", "--config", "{not_toml}"), 2, "is not valid TOML"),
    ("config-binary", ("run", "--config", "{binary}"), 2, "bench.bin"),
    ("config-section-scalar", ("run", "--config", "{scalar_section}"), 2, "[train] must be a table"),
    ("config-presets-scalar", ("run", "--config", "{scalar_presets}"), 2, "[presets] must hold tables"),
    # ---- stores
    ("store-under-file", ("run", "--store", "{not_toml}/results.sqlite"), 2, "not a directory"),
    ("store-in-proc", ("run", "--store", "/proc/bench-results.sqlite"), 2, "/proc/bench-results.sqlite"),
    ("store-dir-in-proc", ("run", "--store", "/proc/no/such/results.sqlite"), 2, "cannot be created"),
    ("store-is-directory", ("run", "--store", "{dir}"), 2, "is a directory"),
    ("store-foreign-run", ("run", "--store", "{foreign}"), 2, "not a bench results store"),
    ("store-foreign-dry-run", ("run", "--dry-run", "--store", "{foreign}"), 2, "not a bench results store"),
    ("store-foreign-report", ("report", "--store", "{foreign}"), 2, "not a bench results store"),
    ("store-foreign-failures", ("failures", "--store", "{foreign}"), 2, "not a bench results store"),
    ("store-foreign-compare", ("compare", "{baseline}", "--store", "{foreign}"), 2,
     "not a bench results store"),
    ("store-text-file", ("run", "--store", "{not_toml}"), 2, "results store"),
    ("store-corrupt-report", ("report", "--store", "{corrupt}"), 2, "malformed"),
    ("store-corrupt-run", ("run", "--store", "{corrupt}"), 2, "malformed"),
    ("store-missing-report", ("report", "--store", "{dir}/none.sqlite"), 2, "no results store"),
    ("store-missing-failures", ("failures", "--store", "{dir}/none.sqlite"), 2, "no results store"),
    ("store-nothing-of-selection", ("report", "--store", "{store}"), 2, "none of the configured cells"),
    # ---- baselines
    ("baseline-directory", ("compare", "{dir}", "{baseline}"), 2, "is a directory"),
    ("current-directory", ("compare", "{baseline}", "{dir}"), 2, "is a directory"),
    ("baseline-missing", ("compare", "{dir}/none.json", "{baseline}"), 2, "does not exist"),
    ("baseline-not-json", ("compare", "{not_toml}", "{baseline}"), 2, "is not a bench results file"),
    ("baseline-no-summary", ("compare", "{no_summary}", "{baseline}"), 2, "is not a bench results file"),
    ("baseline-empty", ("compare", "{empty_baseline}", "{baseline}"), 2, "holds no results"),
    ("nothing-compared", ("compare", "{baseline}", "{other}", "--allow-missing"), 1, "no cell was compared"),
    ("tolerance-typo", ("compare", "{baseline}", "{baseline}", "--abs", "cer=x"), 2, "tolerance 'cer=x'"),
    ("compare-metric-absent", ("compare", "{baseline}", "{baseline}", "--metrics", "wer"), 2,
     "no results for metric(s) wer"),
    # ---- plugins
    ("plugin-name-clash", ("run", "--dry-run", "--plugin=clash"), 2, "metric 'cer' is registered twice"),
    ("plugin-raising", ("list", "--models", "--plugin=raising"), 0, ""),
]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _workspace(root: Path) -> dict[str, str]:
    """Files the cases point at: a config, a bench store, a foreign database, a damaged store,
    baselines and a few things that are none of those."""
    from harness.store.results import ResultStore

    (root / "bench.toml").write_text(SMALL_TOML)
    (root / "notes.txt").write_text("not toml = [\n")
    (root / "bench.bin").write_bytes(bytes(range(256)) * 4)
    (root / "scalar.toml").write_text("train = 5\n")
    (root / "presets.toml").write_text("[presets]\nsmoke = 3\n")
    store = root / "results.sqlite"
    with ResultStore(store) as s:
        s.put("0" * 24, model="some-model", dataset="synthetic", language="de", seed=0,
              metrics={"test": {"cer": 0.5}}, record={}, duration_s=1.0,
              hypotheses={"test": [(f"u{i}", "reference " * 30, "hypothesis " * 30) for i in range(300)]})
    corrupt = root / "corrupt.sqlite"
    data = bytearray(store.read_bytes())
    data[4096:] = bytes([0x5A]) * (len(data) - 4096)
    corrupt.write_bytes(bytes(data))
    foreign = root / "accounts.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    db.execute("INSERT INTO invoices VALUES (1, 9.5)")
    db.commit()
    db.close()
    row = {"model": "m", "dataset": "synthetic", "language": "de", "split": "test", "metric": "cer", "mean": 0.5}
    (root / "baseline.json").write_text(json.dumps({"summary": [row]}))
    (root / "other.json").write_text(json.dumps({"summary": [{**row, "model": "n"}]}))
    (root / "empty.json").write_text(json.dumps({"summary": []}))
    (root / "no_summary.json").write_text(json.dumps({"cells": []}))
    (root / "folder").mkdir()
    return {"cfg": str(root / "bench.toml"), "dir": str(root / "folder"), "store": str(store),
            "corrupt": str(corrupt), "foreign": str(foreign), "not_toml": str(root / "notes.txt"),
            "binary": str(root / "bench.bin"), "scalar_section": str(root / "scalar.toml"),
            "scalar_presets": str(root / "presets.toml"), "baseline": str(root / "baseline.json"),
            "other": str(root / "other.json"), "empty_baseline": str(root / "empty.json"),
            "no_summary": str(root / "no_summary.json")}


def test_there_are_at_least_forty_bad_inputs():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,args,expected,text", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, args, expected, text, bench, tmp_path, monkeypatch):
    if CUDA and name in {"device-cuda", "device-cuda-index", "fp16-on-cpu", "pretrain-on-missing-cuda"}:
        pytest.skip("this machine has CUDA")
    workspace = tmp_path / "work"
    workspace.mkdir()
    files = _workspace(workspace)
    monkeypatch.chdir(workspace)
    plugin = next((a.split("=", 1)[1] for a in args if a.startswith("--plugin=")), None)
    args = tuple(a.format(**files) for a in args if not a.startswith("--plugin="))
    if plugin is not None:
        source = {"clash": CLASHING_PLUGIN, "raising": RAISING_PLUGIN}[plugin]
        install_fake_distribution(tmp_path, monkeypatch, f"{plugin}_bench", source, f"{plugin}-bench", plugin)
    if "--config" not in args and args[0] != "list":
        args = (args[0], "--config", files["cfg"], *args[1:])
    before = _digest(tmp_path)
    with open(files["foreign"], "rb") as fh:
        foreign = fh.read()

    code, out, err = bench(*args)

    assert code == expected, (args, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    if expected == 2:
        errors = [line for line in lines if not line.startswith("warning: ")]
        assert len(errors) == 2, err
        assert errors[0].startswith("error: ") and text in errors[0], err
        assert errors[1].startswith("  hint: ") and len(errors[1]) > len("  hint: "), err
    elif expected == 1:
        assert any(text in line for line in lines), err
    else:  # a faulty plugin: one warning naming it, and the command works
        warnings = [line for line in lines if plugin in line]
        assert len(warnings) == 1 and f"BENCH_DISABLE_PLUGINS={plugin}" in warnings[0], err
    assert _digest(tmp_path) == before, "a file was changed or created"
    assert Path(files["foreign"]).read_bytes() == foreign
