"""The report page: header, cost, sample transcripts, loss curves, bootstrap intervals, and how
the page renders in a real browser."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile

import jiwer
import numpy as np
import pytest

from harness.report.bootstrap import cer_interval, char_edits, mean_interval, rng_seed
from harness.report.tables import write_reports
from harness.report.facts import diff_html, diff_markdown, distinct, sample_ids
from harness.store.results import StoredCell

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _sentence(rng: random.Random) -> str:
    return " ".join("".join(rng.choice(ALPHABET) for _ in range(rng.randint(2, 7))) for _ in range(rng.randint(3, 8)))


def _noisy(rng: random.Random, text: str, rate: float) -> str:
    out = []
    for ch in text:
        r = rng.random()
        if r < rate / 3:
            continue  # deletion
        if r < 2 * rate / 3:
            out.append(rng.choice(ALPHABET))  # substitution
            continue
        out.append(ch)
        if r < rate:
            out.append(rng.choice(ALPHABET))  # insertion
    return "".join(out)


def _rows(seed: int, n: int = 40, rate: float = 0.3, empty: float = 0.0, prefix: str = "utt") -> list:
    rng = random.Random(seed)
    refs = [_sentence(random.Random(f"{prefix}{i}")) for i in range(n)]
    return [(f"{prefix}{i:03d}", ref, "" if rng.random() < empty else _noisy(rng, ref, rate))
            for i, ref in enumerate(refs)]


# ---------------------------------------------------------------------------- bootstrap
def test_char_edits_give_jiwer_cer():
    rows = _rows(1, rate=0.4, empty=0.2)
    edits, lengths = char_edits(rows)
    assert edits.sum() / lengths.sum() == pytest.approx(jiwer.cer([r for _, r, _ in rows], [h for _, _, h in rows]))
    # per utterance too
    for (_, ref, hyp), e, n in zip(rows[:10], edits, lengths):
        assert n == len(ref) and e / n == pytest.approx(jiwer.cer(ref, hyp))


def test_bootstrap_interval_matches_a_direct_computation():
    """The vectorised interval equals a hand-rolled loop over the same draws that scores each
    resample with jiwer itself, and agrees with scipy's percentile bootstrap."""
    rows = _rows(2, n=30)
    interval = cer_interval(rows, resamples=300)
    ids = sorted(u for u, _, _ in rows)
    by_id = {u: (r, h) for u, r, h in rows}
    draws = np.random.default_rng(rng_seed(ids)).integers(0, len(ids), size=(300, len(ids)))
    direct = []
    for draw in draws:
        picked = [by_id[ids[i]] for i in draw]
        direct.append(jiwer.cer([r for r, _ in picked], [h for _, h in picked]))
    low, high = np.percentile(direct, [2.5, 97.5])
    assert interval.low == pytest.approx(low) and interval.high == pytest.approx(high)
    assert interval.estimate == pytest.approx(jiwer.cer([r for _, r, _ in rows], [h for _, _, h in rows]))
    assert interval.low < interval.estimate < interval.high and interval.utterances == 30

    from scipy.stats import bootstrap

    edits, lengths = char_edits(rows)
    res = bootstrap((edits, lengths), lambda e, n, axis=-1: e.sum(axis=axis) / n.sum(axis=axis), paired=True,
                    vectorized=True, n_resamples=4000, method="percentile", rng=np.random.default_rng(0))
    assert interval.low == pytest.approx(res.confidence_interval.low, abs=0.015)
    assert interval.high == pytest.approx(res.confidence_interval.high, abs=0.015)


def test_interval_is_seeded_by_the_test_set_and_pairs_seeds():
    a, b = _rows(3), _rows(4)
    assert cer_interval(a) == cer_interval(list(reversed(a)))  # same store, same interval; order does not matter
    # the mean over seeds on the same test set: each resample averages both seeds on the same draw
    both = mean_interval([a, b], resamples=200)
    ids = sorted(u for u, _, _ in a)
    draws = np.random.default_rng(rng_seed(ids)).integers(0, len(ids), size=(200, len(ids)))
    rates = []
    for draw in draws:
        per_seed = []
        for rows in (a, b):
            by_id = {u: (r, h) for u, r, h in rows}
            picked = [by_id[ids[i]] for i in draw]
            per_seed.append(jiwer.cer([r for r, _ in picked], [h for _, h in picked]))
        rates.append(np.mean(per_seed))
    assert (both.low, both.high) == pytest.approx(tuple(np.percentile(rates, [2.5, 97.5])))
    assert both.estimate == pytest.approx((cer_interval(a).estimate + cer_interval(b).estimate) / 2)


# ---------------------------------------------------------------------------- pieces
def test_samples_are_the_same_utterances_for_every_model_and_run():
    sets = [{f"u{i}" for i in range(50)}, {f"u{i}" for i in range(5, 60)}]
    picked = sample_ids(sets, 3)
    assert picked == sample_ids(list(reversed(sets)), 3) and len(picked) == 3
    assert all(all(u in s for s in sets) for u in picked)


def test_differences_are_marked():
    assert diff_markdown("hello world", "helo wurld") == "he[-l-]lo w[-o-]{+u+}rld"
    assert diff_html("a<b", "a<c") == "a&lt;<del>b</del><ins>c</ins>"
    assert diff_markdown("abc", " ") == "(empty)"


def test_values_that_differ_are_shown_with_their_counts():
    assert distinct(["2.1", "2.1"]) == "2.1"
    assert distinct(["2.1", "2.2", "2.1"]) == "2 values: 2.1 (2 cells); 2.2 (1 cell)"


# ---------------------------------------------------------------------------- a whole report
LANGS = ["de", "es", "it", "ru", "pl", "fr", "nl", "sv-SE", "pt", "uk", "fa", "ar", "id", "ja"]


def _cell(model: str, lang: str, seed: int, rows: list, torch_version: str = "2.13.0") -> StoredCell:
    cer = jiwer.cer([r for _, r, _ in rows], [h for _, _, h in rows])
    empty = sum(1 for _, _, h in rows if not h.strip()) / len(rows)
    record = {
        "preset": "tiny-study", "seed": seed, "git_revision": "abc123",
        "identity": {"model": {"version": "1", "metadata": {"architecture": "wav2vec2", "pretraining_hours": 0.5},
                               "options": {}, "facts": {"pretrained": model != "scratch"}},
                     "dataset": {"version": "2", "options": {"train_minutes": 8}},
                     "protocol": {"name": "finetune", "version": "1", "options": {}},
                     "train": {"steps": 150, "lr": 0.002}},
        "packages": {"bench": "0.9.0", "torch": torch_version, "jiwer": "4.0.0"},
        "machine": {"cpu": "Test CPU", "cpu_capability": "AVX2", "torch_threads": 2, "device": "cpu"},
        "data": {"train_hours": 0.13, "train_utterances": 200, "test_hours": 0.02, "test_utterances": len(rows)},
        "train": {"train_seconds": 12.5 + seed, "encode_seconds": 1.5, "eval_seconds": {"dev": 0.5, "test": 0.6},
                  "updates": 150, "audio_seconds": 900.0, "audio_seconds_per_second": 72.0,
                  "loss_curve": [round(4.0 * 0.9 ** i + 0.1 * seed, 4) for i in range(6)]},
        "outputs": {"test": {"utterances": len(rows), "empty_hypotheses": empty},
                    "dev": {"utterances": len(rows), "empty_hypotheses": empty}},
    }
    key = f"{model}-{lang}-{seed}"
    return StoredCell(key, model, "synthetic", lang, seed, {"test": {"cer": cer, "wer": cer * 2},
                                                            "dev": {"cer": cer, "wer": cer * 2}},
                      record, 1_700_000_000.0 + 100 * seed, 20.0)


@pytest.fixture()
def report(tmp_path):
    cells, hypotheses = [], {}
    for m, (model, rate) in enumerate((("good-model", 0.15), ("mid-model", 0.35), ("scratch", 0.0))):
        for lang in LANGS:
            for seed in (0, 1):
                rows = _rows(seed * 7 + m, n=25, rate=rate, empty=1.0 if model == "scratch" else 0.02,
                             prefix=f"{lang}-")
                cell = _cell(model, lang, seed, rows, torch_version="2.13.0" if seed == 0 else "2.12.1")
                cells.append(cell)
                hypotheses[cell.key] = rows
    paths = write_reports(cells, tmp_path / "reports", ["cer", "wer"], hypotheses=hypotheses)
    return cells, hypotheses, paths


def test_report_has_header_cost_samples_curves_and_intervals(report):
    cells, hypotheses, paths = report
    md = paths["md"].read_text()
    html = paths["html"].read_text()
    payload = json.loads(paths["json"].read_text())
    # header: from the records, differing values shown as such
    assert "preset: tiny-study" in md and "torch=2 values: 2.12.1 (42 cells); 2.13.0 (42 cells)" in md
    assert "git revision abc123" in md and payload["header"]["seeds"] == "0, 1"
    assert "model good-model" in payload["header"] and "architecture=wav2vec2" in payload["header"]["model good-model"]
    # findings come first after the header
    assert md.index("## What ran") < md.index("## Statistics") < md.index("## CER (test)")
    assert html.index("What ran") < html.index("Statistics (synthetic)") < html.index("CER (test)")
    # cost
    assert "Total compute: 84 cells" in md and payload["cost"]["total"]["cells"] == 84
    assert payload["cost"]["total"]["train_s"] == pytest.approx(42 * 12.5 + 42 * 13.5)
    assert {r["model"] for r in payload["cost"]["models"]} == {"good-model", "mid-model", "scratch"}
    # samples: the same utterance ids for every model, differences marked
    de = next(s for s in payload["samples"] if s["language"] == "de")
    assert len(de["utterances"]) == 3
    assert all(set(u["hypotheses"]) == {"good-model", "mid-model", "scratch"} for u in de["utterances"])
    assert "<del>" in html and "<ins>" in html and "[-" in md and "(empty)" in md
    assert de["empty_hypotheses"]["scratch"] == {"0": 1.0, "1": 1.0} and "100% / 100%" in md
    # curves
    assert paths["loss_curves"].read_bytes()[:4] == b"\x89PNG" and "training loss curves" in html
    # intervals, beside mean ± sd, in every format
    cell = next(c for c in payload["cells"] if c["key"] == "good-model-de-0")
    direct = cer_interval(hypotheses["good-model-de-0"])
    assert cell["cer_test_interval"]["low"] == pytest.approx(direct.low)
    group = next(r for r in payload["intervals"] if r["model"] == "good-model" and r["language"] == "de")
    assert group["low"] <= group["mean"] <= group["high"] and group["n"] == 2
    assert f"[{group['low']:.3f}, {group['high']:.3f}]" in md and f"[{group['low']:.3f}, {group['high']:.3f}]" in html
    # one self-contained page: every picture embedded, every table in a scrolling block
    assert "src='data:image/png;base64," in html and "src='http" not in html and "<link" not in html
    assert html.count("<table") == html.count("<div class='scroll'><table")
    assert html.count("<figcaption>") == html.count("<img ")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.mark.skipif(_chromium() is None, reason="no chromium installed (apt-get install chromium)")
def test_page_reads_well_in_a_headless_browser(report, tmp_path):
    """Rendered by Chromium: the header and findings are on the page, and no table makes the page
    wider than the window (wide tables scroll within themselves)."""
    _, _, paths = report
    html = paths["html"].read_text()
    # a copy that writes the page's width and visible text into the DOM once laid out
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", (
        "<script>window.addEventListener('load',()=>{const d=document.documentElement;"
        "const p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify({"
        "scrollWidth:d.scrollWidth,innerWidth:window.innerWidth,"
        "scrollers:[...document.querySelectorAll('.scroll')].filter(s=>s.scrollWidth>s.clientWidth).length});"
        "document.body.appendChild(p);});</script></body>")))
    exe = _chromium()
    with tempfile.TemporaryDirectory() as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1000,1400"]
        dom = subprocess.run([exe, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path / "report.png"
        subprocess.run([exe, *flags, f"--screenshot={shot}", paths["html"].as_uri()], capture_output=True,
                       timeout=120)
    assert "What ran" in dom and "Statistics (synthetic)" in dom and "Training curves" in dom
    assert "What the models output" in dom and "Total compute" in dom
    probe_text = dom.split("<pre id=\"probe\">")[1].split("</pre>")[0]
    layout = json.loads(probe_text.replace("&quot;", '"'))
    assert layout["scrollWidth"] <= layout["innerWidth"]  # the page itself never scrolls sideways
    assert layout["scrollers"] >= 1  # 14 languages: the widest tables scroll within their own block
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


# ---------------------------------------------------------------------------- statistics on the page
def test_header_counts_a_language_once_across_datasets(tmp_path):
    from dataclasses import replace

    from harness.report.facts import header

    rows = _rows(0, n=10)
    cells = [_cell("m", "de", 0, rows), replace(_cell("m", "de", 0, rows), key="other", dataset="common_voice")]
    facts = dict(header(cells))
    assert facts["cells"] == "2: 1 model × 1 language × 2 datasets × 1 seed"
    gappy = [_cell("m", "de", 0, rows), _cell("m", "es", 0, rows), _cell("n", "de", 0, rows)]
    assert dict(header(gappy))["cells"] == ("3: 2 models × 2 languages × 1 seed (not a full matrix: 1 of 4 "
                                            "combinations have no result)")


def test_page_states_the_correction_effects_and_an_uninformative_metric(tmp_path):
    """WER between 1.00 and 1.06 in every trained cell is said to carry no information and comes
    after CER; every tested finding shows an effect size with its interval and its Holm-adjusted p."""
    from dataclasses import replace

    cells = []
    for m, (model, rate) in enumerate((("good-model", 0.10), ("mid-model", 0.30))):
        for lang in ("de", "es", "ru"):
            for seed in (0, 1, 2):
                cell = _cell(model, lang, seed, _rows(seed * 5 + m, n=20, rate=rate, prefix=f"{lang}-"))
                wer = 1.0 + 0.02 * seed
                cells.append(replace(cell, metrics={s: {"cer": v["cer"], "wer": wer} for s, v in cell.metrics.items()}))
    paths = write_reports(cells, tmp_path / "r", ["cer", "wer"])
    md, html = paths["md"].read_text(), paths["html"].read_text()
    payload = json.loads(paths["json"].read_text())
    assert "WER carries no information here" in md and "between 1.000 and 1.040" in md
    assert "WER carries no information here" in html
    assert md.index("## CER (test)") < md.index("## WER (test)")
    assert "Holm-corrected together" in md and "Holm-corrected together" in html
    tested = [f for f in payload["findings"]["synthetic"] if f["p_value"] is not None]
    assert tested and all(f["effect"] and f["p_adjusted"] >= f["p_value"] for f in tested)
    assert all(f["effect"]["low"] is not None for f in tested if f["topic"] in {"de", "es", "ru"})
    assert "95 % bootstrap interval" in md and "Holm-adjusted over the page" in html
    assert payload["statistics"]["uninformative_metrics"].keys() == {"wer"}
