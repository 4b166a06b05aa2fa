"""Evaluation protocols as plugins: finetune, superb, a third-party protocol; metrics scored from
stored hypotheses; blank-output cells flagged and never ranked best."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from conftest import install_fake_distribution
from golden_cells import tiny_splits
from harness.store.results import ResultStore

ORACLE_SOURCE = '''
from harness.api import CellOutcome, ProtocolSpec, SplitOutput
from harness.errors import BenchError
from harness.hookspecs import hookimpl
from harness.engine.text import normalize


def run(request):
    """Transcribes every utterance as its reference, with the first `drop` characters left out."""
    drop = request.options["drop"]
    splits = {}
    for name in ("dev", "test"):
        rows = [(u.id, normalize(u.text, request.language), normalize(u.text, request.language)[drop:])
                for u in getattr(request.data, name)]
        splits[name] = SplitOutput(rows, sum(u.seconds for u in getattr(request.data, name)))
    return CellOutcome(splits, ("<blank>",), {"device": "cpu", "oracle": True})


def check(options):
    if options["drop"] < 0:
        raise BenchError("[protocols.oracle] drop must be >= 0", "set it to 0 or more")


@hookimpl
def bench_register_protocols(register):
    register(ProtocolSpec("oracle", run, version="2.1", description="reads the answer", defaults={"drop": 1},
                          check=check))


@hookimpl
def bench_register_metrics(register):
    from harness.api import MetricSpec
    register(MetricSpec("exact", lambda refs, hyps: sum(r == h for r, h in zip(refs, hyps)) / len(refs), "7",
                        lower_is_better=False))


class Plain:
    pass


def off_by_one(request):
    from plugins.models.hf import build_tiny
    model = build_tiny("wav2vec2", request)
    exact = model.frame_lengths
    model.frame_lengths = lambda samples: exact(samples) + 1
    return model


@hookimpl
def bench_register_models(register):
    from harness.api import ModelSpec
    from plugins.models.hf import build_tiny
    register(ModelSpec("no-hidden-states", lambda request: build_tiny("wav2vec2", request), "1"))
    register(ModelSpec("off-by-one", off_by_one, "1"))
'''


@pytest.fixture()
def oracle(tmp_path, monkeypatch):
    return install_fake_distribution(tmp_path, monkeypatch, "oracle_protocol", ORACLE_SOURCE, "oracle-protocol",
                                     "oracle", version="2.1")


def test_list_shows_both_protocols_with_their_options(bench):
    code, out, _ = bench("list", "--protocols")
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("finetune") for line in lines)
    superb = "\n".join(lines[next(i for i, line in enumerate(lines) if line.startswith("superb")):])
    assert "downstream=transformer" in superb and "proj_dim=80" in superb and "width=256" in superb


def test_third_party_protocol_registers_runs_and_keys_cells(oracle, bench, small_config):
    code, out, _ = bench("list", "--protocols")
    assert "oracle" in out and "oracle-protocol 2.1" in out
    args = ("--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "de")
    code, out, err = bench("run", *args, "--protocols", "finetune,oracle", "--dry-run")
    assert code == 0, err
    keys = [line.split()[-1] for line in out.splitlines() if line.endswith(tuple("0123456789abcdef"))
            and "to compute" in line]
    assert len(keys) == 2 and len(set(keys)) == 2  # the protocol is a matrix dimension with its own keys
    # its options are part of the key, typos refused with did-you-mean, values checked before any cell
    code, out2, _ = bench("run", *args, "--protocols", "oracle", "--set", "protocols.oracle.drop=2", "--dry-run")
    assert code == 0 and "oracle" in out2 and not any(key in out2 for key in keys)
    code, _, err = bench("run", *args, "--protocols", "oracle", "--set", "protocols.oracle.dorp=2")
    assert code == 2 and "unknown option 'dorp'" in err and "Did you mean 'drop'" in err
    code, _, err = bench("run", *args, "--protocols", "oracle", "--set", "protocols.oracle.drop=-1")
    assert code == 2 and "drop must be >= 0" in err
    code, _, err = bench("run", *args, "--protocols", "oracel")
    assert code == 2 and "unknown protocol 'oracel'" in err and "oracle" in err
    code, _, err = bench("run", *args, "--set", "protocols.superbb.width=3")
    assert code == 2 and "[protocols.superbb]" in err and "superb" in err

    code, out, err = bench("run", *args, "--protocols", "oracle", "--set", "run.metrics=['cer','exact']")
    assert code == 0, err
    with ResultStore(small_config.parent / "results.sqlite") as store:
        (cell,) = store.cells()
        rows = store.hypotheses(cell.key, "test")
    assert cell.protocol == "oracle" and cell.record["identity"]["protocol"] == {
        "name": "oracle", "version": "2.1", "options": {"drop": 1}}
    assert cell.record["train"]["oracle"] and cell.record["protocol_origin"] == "oracle-protocol 2.1"
    assert cell.metrics["test"]["exact"] == 0.0 and cell.metrics["test"]["cer"] > 0
    assert cell.record["metric_versions"]["exact"] == "7"
    assert rows and all(hyp == ref[1:] for _, ref, hyp in rows)


def test_model_without_hidden_states_is_refused_by_superb_before_any_cell(oracle, bench, small_config):
    code, _, err = bench("run", "--config", str(small_config), "--models", "tiny-wav2vec2,no-hidden-states",
                         "--protocols", "superb")
    assert code == 2
    assert "protocol 'superb' cannot evaluate model 'no-hidden-states'" in err and "hidden_states" in err
    assert not (small_config.parent / "results.sqlite").exists() or not ResultStore(
        small_config.parent / "results.sqlite").cells()


def test_frame_lengths_that_disagree_with_encode_fail_the_cell_naming_the_model(oracle, bench, small_config):
    code, _, err = bench("run", "--config", str(small_config), "--models", "off-by-one", "--langs", "de")
    assert code == 3
    assert "HFCTCModel: frame_lengths() gives" in err and "but encode() returned" in err
    assert "Traceback" not in err


def test_superb_options_are_checked(bench, small_config):
    code, _, err = bench("run", "--config", str(small_config), "--protocols", "superb",
                         "--set", "protocols.superb.downstream='gru'")
    assert code == 2 and "downstream" in err and "lstm" in err
    code, _, err = bench("run", "--config", str(small_config), "--protocols", "superb",
                         "--set", "protocols.superb.width=100", "--set", "protocols.superb.heads=3")
    assert code == 2 and "multiple of heads" in err


@pytest.mark.parametrize("downstream", ["transformer", "lstm"])
def test_superb_hidden_state_cache_is_exact(downstream):
    """The cached hidden states give the same updates as computing them for every batch."""
    from harness.api import ProtocolRequest
    from harness.plan.config import RuntimeSettings, TrainSettings
    from plugins.models.hf import build_tiny
    from plugins.protocols import superb

    options = {**superb.DEFAULTS, "downstream": downstream, "width": 32, "ff_dim": 64, "proj_dim": 16}
    outcomes = {}
    for setting in ("on", "off"):
        request = ProtocolRequest(
            build_model=lambda r: build_tiny("wav2vec2", r), data=tiny_splits(), language="de", seed=3,
            train=TrainSettings(steps=30, batch_seconds=3.0, lr=3e-3),
            runtime=RuntimeSettings(device="cpu", feature_cache=setting), options=options)
        outcomes[setting] = superb.run(request)
    on, off = outcomes["on"], outcomes["off"]
    assert on.train_info["feature_cache"] is True and off.train_info["feature_cache"] is False
    assert len(on.train_info["loss_curve"]) == 2
    assert on.train_info["loss_curve"] == off.train_info["loss_curve"]
    assert on.train_info["layer_weights"] == off.train_info["layer_weights"]
    assert on.splits["test"].hypotheses == off.splits["test"].hypotheses
    weights = on.train_info["layer_weights"]
    assert len(weights) == on.train_info["upstream_layers"] == 5  # transformer input + 4 layers
    assert math.isclose(sum(weights), 1.0, abs_tol=1e-4) and len(set(weights)) > 1  # learned, not uniform
    # only the downstream trains
    assert on.train_info["trainable_parameters"] < on.train_info["parameters"] / 2


def test_hf_hidden_states_match_transformers_output():
    """The hook-captured hidden states equal what the full model returns with output_hidden_states."""
    import torch

    from harness.api import ModelRequest, frame_mask
    from plugins.models.hf import build_tiny

    torch.manual_seed(0)
    model = build_tiny("hubert", ModelRequest(vocab_size=8, blank_id=0, seed=0)).eval()
    audio = torch.randn(1, 16000)
    with torch.no_grad():
        features = model.encode(audio)
        lengths = model.frame_lengths(torch.tensor([16000]))
        ours = model.hidden_states(features, frame_mask(lengths, features.shape[1]))
        theirs = model.model(audio, output_hidden_states=True).hidden_states
    assert len(ours) == len(theirs) == 5
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_metric_added_after_a_run_is_scored_from_stored_hypotheses(oracle, bench, small_config, monkeypatch):
    args = ("--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "de,es", "--protocols", "oracle")
    code, _, err = bench("run", *args, "--set", "run.metrics=['cer']")
    assert code == 0, err
    with ResultStore(small_config.parent / "results.sqlite") as store:
        before = store.cells()
    assert all("exact" not in c.metrics["test"] for c in before)

    import harness.run.cell

    def no_training(*a, **k):
        raise AssertionError("a cell was computed again")

    monkeypatch.setattr(harness.run.cell, "_compute", no_training)
    code, out, err = bench("report", *args, "--set", "run.metrics=['cer','exact']")
    assert code == 0, err
    assert "scored 2 stored cell(s)" in out  # reading commands score in memory: the store is opened read-only
    payload = json.loads((small_config.parent / "reports" / "matrix.json").read_text())
    assert payload["metrics"]["exact"] == {"lower_is_better": False}
    assert {r["metric"] for r in payload["summary"]} == {"cer", "exact"}
    with ResultStore(small_config.parent / "results.sqlite") as store:
        direct = {}
        for cell in before:
            rows = store.hypotheses(cell.key, "test")
            direct[cell.key] = sum(r == h for _, r, h in rows) / len(rows)
    assert {c["key"]: c["metrics"]["test"]["exact"] for c in payload["cells"]} == direct

    # bench run computes no cell and writes the new scores into the store, once
    code, out, _ = bench("run", *args, "--set", "run.metrics=['cer','exact']")
    assert code == 0 and "0 cells computed" in out and "scored 2 stored cell(s)" in out
    with ResultStore(small_config.parent / "results.sqlite") as store:
        after = {c.key: c for c in store.cells()}
    for cell in before:
        assert after[cell.key].metrics["test"]["exact"] == direct[cell.key]
        assert after[cell.key].metrics["test"]["cer"] == cell.metrics["test"]["cer"]
        assert after[cell.key].record["metric_versions"] == {"cer": cell.record["metric_versions"]["cer"], "exact": "7"}
    code, out, _ = bench("run", *args, "--set", "run.metrics=['cer','exact']")
    assert code == 0 and "scored" not in out


def _summary(rows):
    frame = pd.DataFrame(rows, columns=["protocol", "model", "dataset", "language", "split", "metric", "mean", "sd",
                                        "n", "blank"])
    return frame


def test_rankings_honour_direction_and_never_crown_blank_output():
    from harness.report.tables import matrix, rankings

    rows = [
        # WER of a blank model (1.000) is below that of trained models that insert words (1.01, 1.02)
        ("finetune", "blank", "synthetic", "es", "test", "wer", 1.000, 0.0, 3, 3),
        ("finetune", "trained-a", "synthetic", "es", "test", "wer", 1.020, 0.0, 3, 0),
        ("finetune", "trained-b", "synthetic", "es", "test", "wer", 1.010, 0.0, 3, 1),
        ("finetune", "blank", "synthetic", "es", "test", "exact", 0.0, 0.0, 3, 3),
        ("finetune", "trained-a", "synthetic", "es", "test", "exact", 0.30, 0.0, 3, 0),
        ("finetune", "trained-b", "synthetic", "es", "test", "exact", 0.20, 0.0, 3, 1),
    ]
    summary = _summary(rows)
    wer = matrix(summary, "wer", "test")
    assert wer.blank == {("blank", "es")}
    assert wer.best("es") == "trained-b"
    assert [(r, m, b) for r, m, _, b in rankings(wer)["es"]] == [(1, "trained-b", False), (2, "trained-a", False),
                                                                 (3, "blank", True)]
    row = {r[0]: r[1] for r in wer.rows()}
    assert row["blank"].endswith("†") and row["trained-b"].startswith("*")
    exact = matrix(summary, "exact", "test", lower_is_better=False)
    assert exact.best("es") == "trained-a"
    assert [m for _, m, _, _ in rankings(exact)["es"]] == ["trained-a", "trained-b", "blank"]
    # when every model outputs blanks, none is best
    only_blank = matrix(_summary([rows[0]]), "wer", "test")
    assert only_blank.best("es") is None and "*" not in only_blank.table()


def test_report_groups_by_protocol_and_draws_layer_weights(bench, small_config):
    args = ("--config", str(small_config), "--models", "tiny-hubert", "--langs", "de,es",
            "--protocols", "finetune,superb")
    code, _, err = bench("run", *args)
    assert code == 0, err
    code, out, err = bench("report", *args)
    assert code == 0, err
    assert "protocol finetune" in out and "protocol superb" in out
    reports = small_config.parent / "reports"
    md = (reports / "matrix.md").read_text()
    assert "CER (test) — protocol superb" in md and "Layer weights (superb)" in md
    png = (reports / "layer_weights.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = (reports / "report.html").read_text()
    assert "Layer weights learned by the superb protocol" in html
    payload = json.loads((reports / "matrix.json").read_text())
    assert {r["protocol"] for r in payload["summary"]} == {"finetune", "superb"}
    superb_cells = [c for c in payload["cells"] if c["protocol"] == "superb"]
    assert len(superb_cells) == 2 and all(len(c["layer_weights"]) == 5 for c in superb_cells)
    assert "synthetic, protocol superb" in payload["findings"]
