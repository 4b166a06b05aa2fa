"""`bench report` files and `bench compare` exit codes."""

import json

import pytest


@pytest.fixture()
def finished(bench, small_config):
    """A finished 2 models x 2 languages x 2 seeds run and its baseline JSON."""
    code, _, err = bench("run", "--config", str(small_config), "--seeds", "2")
    assert code == 0, err
    baseline = small_config.parent / "baseline.json"
    code, out, err = bench("report", "--config", str(small_config), "--seeds", "2", "--json", str(baseline))
    assert code == 0, err
    return small_config, baseline, out


def test_report_writes_every_output(finished):
    config, baseline, out = finished
    reports = config.parent / "reports"
    assert "8 of 8 cells have results" in out
    payload = json.loads((reports / "matrix.json").read_text())
    assert json.loads(baseline.read_text())["summary"] == payload["summary"]
    cer = [r for r in payload["summary"] if r["metric"] == "cer" and r["split"] == "test"]
    assert len(cer) == 4 and all(r["n"] == 2 for r in cer)
    md = (reports / "matrix.md").read_text()
    assert "(family)" in md and "Indo-European" in md and "Ranking of models per language" in md
    assert "±" in md
    # 3 updates leave every model on the blank plateau: each cell is flagged, none is crowned best
    assert "†" in md and "blank output" in md and "**" not in md.split("### Ranking")[0]
    assert all(c["blank_output"] for c in payload["cells"])
    # 2 seeds per model: the per-language comparison is made (3 updates leave every model at CER 1.0,
    # which is reported as such rather than tested)
    assert "- de: " in md and "- es: " in md and "needs at least 2 seeds" not in md
    tex = (reports / "matrix.tex").read_text()
    assert "\\begin{table}" in tex and "$\\pm$" in tex and "\\textbf{" not in tex
    png = (reports / "heatmap_cer.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    html = (reports / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html and "Statistics (synthetic)" in html
    assert "<b>" not in html and "blank output" in html
    assert len(payload["findings"]["synthetic"]) >= 3  # 2 languages + family comparison(s)
    # what ran, what it cost, what the models output, curves and intervals, from the stored records and hypotheses
    assert "## What ran" in md and "- preset: " in md and "Total compute: 8 cells" in md
    assert md.index("## What ran") < md.index("## Statistics") < md.index("## CER (test)")
    assert payload["header"]["seeds"] == "0, 1" and payload["cost"]["total"]["cells"] == 8
    assert all(len(s["utterances"]) == 3 for s in payload["samples"])
    assert len(payload["intervals"]) == 4 and all(c["cer_test_interval"] for c in payload["cells"])
    assert (reports / "loss_curves.png").exists() and "Training curves" in html and "What the models output" in html


def _write(path, payload, change=None, drop=None):
    payload = json.loads(json.dumps(payload))
    rows = payload["summary"]
    target = next(i for i, r in enumerate(rows) if r["metric"] == "cer" and r["split"] == "test")
    if change is not None:
        rows[target]["mean"] += change
    if drop:
        rows.pop(target)
    path.write_text(json.dumps(payload))
    return str(path)


def test_compare_exit_codes(finished, bench, tmp_path):
    _, baseline, _ = finished
    payload = json.loads(baseline.read_text())
    code, out, _ = bench("compare", str(baseline), _write(tmp_path / "same.json", payload))
    assert code == 0 and "0 regressions" in out and out.strip().endswith("OK")

    code, out, err = bench("compare", str(baseline), _write(tmp_path / "worse.json", payload, change=0.1))
    assert code == 1 and "regressions:" in out and "+0.1000" in out and "FAIL" in err

    code, out, _ = bench("compare", str(baseline), _write(tmp_path / "better.json", payload, change=-0.1))
    assert code == 0 and "improvements:" in out and "1 improvements" in out

    small = _write(tmp_path / "small.json", payload, change=0.015)
    assert bench("compare", str(baseline), small)[0] == 1  # default tolerance 0.01
    assert bench("compare", str(baseline), small, "--abs", "cer=0.02")[0] == 0
    assert bench("compare", str(baseline), small, "--abs", "cer=0", "--rel", "cer=10")[0] == 0

    missing = _write(tmp_path / "missing.json", payload, drop=True)
    code, out, _ = bench("compare", str(baseline), missing)
    assert code == 1 and "missing from the current results" in out
    assert bench("compare", str(baseline), missing, "--allow-missing")[0] == 0
    code, out, _ = bench("compare", missing, str(baseline))
    assert code == 0 and "not in the baseline (new)" in out


def test_identical_rerun_passes_against_the_baseline(finished, bench, tmp_path):
    config, baseline, _ = finished
    other = tmp_path / "rerun.sqlite"
    assert bench("run", "--config", str(config), "--seeds", "2", "--store", str(other))[0] == 0
    code, out, _ = bench("compare", str(baseline), "--config", str(config), "--seeds", "2", "--store", str(other),
                         "--abs", "cer=0", "--abs", "wer=0")
    assert code == 0 and "0 regressions, 0 improvements, 0 missing" in out


def test_compare_bad_inputs(bench, tmp_path):
    code, _, err = bench("compare", str(tmp_path / "nope.json"), str(tmp_path / "nope.json"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "bad.json").write_text("{}")
    code, _, err = bench("compare", str(tmp_path / "bad.json"), str(tmp_path / "bad.json"))
    assert code == 2 and "not a bench results file" in err
    code, _, err = bench("compare", str(tmp_path / "bad.json"), "--abs", "cer")
    assert code == 2
