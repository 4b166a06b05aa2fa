"""The common_voice dataset plugin on a small release written by the test (official layout, MP3)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.api import DatasetRequest
from harness.errors import BenchError
from harness.store.results import ResultStore
from plugins.datasets import audio
from plugins.datasets import common_voice as cv

RATE = 48_000  # Common Voice clips are 48 kHz MP3
COLUMNS = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
           "gender", "accents", "variant", "locale", "segment"]
#: the columns of Common Voice 7.0, the study's release
COLUMNS_7 = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent", "locale", "segment"]
SENTENCES = {
    # four for training, two held out for dev and test (Common Voice keeps sentences apart too)
    "de": ["Guten Morgen, Welt!", "Wie geht's dir heute?", "Das Wetter ist schön.", "Straße und Fluss „nah“.",
           "Ein Tag am Meer.", "Gute Nacht!"],
    "ja": ["今日は良い天気です。", "ありがとう、ございます！", "東京へ行きます", "「こんにちは」と言った。",
           "お元気ですか？", "さようなら、また明日。"],
    "ar": ["مرحبا بالعالم.", "كيف حالك؟", "الطقس جميل اليوم، نعم", "شكرا جزيلا", "إلى اللقاء", "صباح الخير، يا صديقي"],
}


def _tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.2 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def make_release(root: Path, lang: str, train: int = 30, dev: int = 5, test: int = 5, bad: bool = True,
                 columns: list[str] = COLUMNS, name: str = "cv-corpus-99.0-test") -> Path:
    """cv-corpus-test/<lang>/{train,dev,test,validated}.tsv and clips/*.mp3; returns the release dir."""
    release = root / name
    clips = release / lang / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    counter = iter(range(10_000))
    tables: dict[str, list[dict]] = {}
    for split, n in (("train", train), ("dev", dev), ("test", test)):
        rows = []
        for i in range(n):
            k = next(counter)
            name = f"common_voice_{lang}_{k:05d}.mp3"
            sf.write(clips / name, _tone(1.0 + (k % 5) * 0.25, k), RATE, format="MP3")
            sentence = SENTENCES[lang][k % 4] if split == "train" else SENTENCES[lang][4 + k % 2]
            rows.append({"client_id": f"{split}-speaker-{i % 3}", "path": name, "sentence": sentence})
        tables[split] = rows
    if bad:
        sf.write(clips / "long.mp3", _tone(6.0, 1), RATE, format="MP3")
        (clips / "garbage.mp3").write_bytes(b"not an mp3 at all" * 20)
        (clips / "empty.mp3").write_bytes(b"")
        sf.write(clips / "quiet.mp3", _tone(1.0, 2), RATE, format="MP3")
        sf.write(clips / "quiet2.mp3", _tone(1.0, 3), RATE, format="MP3")
        tables["train"] += [
            {"client_id": "x", "path": "missing.mp3", "sentence": SENTENCES[lang][0]},
            {"client_id": "x", "path": "garbage.mp3", "sentence": SENTENCES[lang][1]},
            {"client_id": "x", "path": "empty.mp3", "sentence": SENTENCES[lang][1]},
            {"client_id": "x", "path": "quiet.mp3", "sentence": "   "},
            {"client_id": "x", "path": "quiet2.mp3", "sentence": "?!…"},
            {"client_id": "x", "path": "long.mp3", "sentence": SENTENCES[lang][2]},
        ]
        tables["test"].append({"client_id": "y", "path": "missing-test.mp3", "sentence": SENTENCES[lang][0]})
    tables["validated"] = [r for split in ("train", "dev", "test") for r in tables[split]]
    for split, rows in tables.items():
        with (release / lang / f"{split}.tsv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, columns, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None,
                                    quotechar="\x07", restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return release


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cv")
    for lang in ("de", "ja", "ar"):
        path = make_release(root, lang)
    return path


def _load(release_dir, tmp_path, lang="de", seed=0, **options):
    opts = {"release": str(release_dir), "train_hours": 20 / 3600, "max_clip_seconds": 4.0, **options}
    return cv.load(DatasetRequest(lang, seed, opts, tmp_path / "cache"))


def test_protocol_subset_skips_and_record(release, tmp_path):
    data = _load(release, tmp_path)
    # a subset of ~20 s drawn from the train split: just over the target, never far over
    train_seconds = sum(u.seconds for u in data.train)
    assert 20 <= train_seconds < 20 + 2.01
    assert len(data.dev) == 5 and len(data.test) == 5  # as released, minus the missing clip
    assert all(len(u.audio) == round(u.seconds * 16_000) for u in data.train)
    assert {u.audio.dtype for u in data.train} == {np.dtype("float32")}
    assert data.skipped["test"] == {"missing_clip": 1}
    assert data.info["train_hours"] == pytest.approx(train_seconds / 3600)
    assert data.info["train_utterances"] == len(data.train)
    assert data.info["train_speakers"] == len({u.speaker for u in data.train})
    assert data.info["test_speakers"] == 3 and data.info["subset_seed"] == 0
    assert "cv-corpus-99.0-test" in data.info["source"]


def test_every_bad_row_is_counted_when_the_whole_split_is_drawn(release, tmp_path):
    data = _load(release, tmp_path, train_hours=1.0)  # more than there is: everything is drawn
    assert data.skipped["train"] == {"missing_clip": 1, "undecodable_audio": 2, "empty_sentence": 2, "too_long": 1}
    assert len(data.train) == 30 and data.info["train_exhausted"] is True


def test_subset_is_deterministic_for_a_seed_and_differs_across_seeds(release, tmp_path):
    first = [u.id for u in _load(release, tmp_path / "a", seed=1).train]
    again = [u.id for u in _load(release, tmp_path / "b", seed=1).train]  # decoded afresh
    other = [u.id for u in _load(release, tmp_path / "a", seed=2).train]
    assert first == again and first != other
    # dev and test are the same for every seed
    assert [u.id for u in _load(release, tmp_path, seed=1).test] == [u.id for u in _load(release, tmp_path, seed=2).test]


def test_decoding_matches_the_clip_and_is_cached(release, tmp_path, monkeypatch):
    data = _load(release, tmp_path)
    utt = data.dev[0]
    raw, rate = sf.read(release / "de" / "clips" / utt.id, dtype="float32")
    assert rate == RATE and abs(len(utt.audio) - len(raw) / 3) <= 1  # 48 kHz -> 16 kHz
    calls = []
    monkeypatch.setattr(audio, "decode", lambda source: calls.append(source))
    again = _load(release, tmp_path)
    assert calls == [] and [u.id for u in again.train] == [u.id for u in data.train]
    np.testing.assert_allclose(again.dev[0].audio, utt.audio, atol=1 / 32767)


def test_validated_split_excludes_dev_and_test(release, tmp_path):
    data = _load(release, tmp_path, train_split="validated", train_hours=1.0)
    held = {u.id for u in data.dev + data.test} | {u.speaker for u in data.dev + data.test}
    assert data.train and not any(u.id in held or u.speaker in held for u in data.train)


def test_capped_dev_and_test(release, tmp_path):
    data = _load(release, tmp_path, dev_hours=2.5 / 3600)
    assert 2.5 <= sum(u.seconds for u in data.dev) < 2.5 + 2.01 and len(data.dev) < 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"release": "/nonexistent/cv-corpus"}, "does not exist"),
        ({"release": ""}, "no data source configured"),
        ({"train_split": "everything"}, "train_split must be"),
        ({"train_hours": 0}, "train_hours must be a positive number"),
        ({"hf_dataset": "x"}, "sets both release and hf_dataset"),
    ],
)
def test_configuration_errors(release, tmp_path, monkeypatch, options, message):
    monkeypatch.delenv("BENCH_COMMON_VOICE", raising=False)
    with pytest.raises(BenchError, match=message) as info:
        _load(release, tmp_path, **options)
    assert info.value.hint


def test_missing_language_names_what_the_release_has(release, tmp_path):
    with pytest.raises(BenchError, match="has no language 'fr'") as info:
        _load(release, tmp_path, lang="fr")
    assert "languages in it: ar, de, ja" in info.value.hint


def test_release_found_through_the_environment_and_its_parent(release, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_COMMON_VOICE", str(release.parent))  # the directory holding cv-corpus-*
    data = cv.load(DatasetRequest("de", 0, {"train_hours": 5 / 3600}, tmp_path))
    assert data.train and "cv-corpus-99.0-test" in data.info["source"]


def test_hugging_face_dataset_saved_to_disk(release, tmp_path):
    datasets = pytest.importorskip("datasets")
    parts = {}
    for split, name in (("train", "train"), ("dev", "validation"), ("test", "test")):
        rows = cv.ReleaseSource(str(release), "ja").rows(split)
        audio = []
        for r in rows:
            path = release / "ja" / "clips" / r.clip
            audio.append({"bytes": path.read_bytes() if path.exists() else b"", "path": r.clip})
        parts[name] = datasets.Dataset.from_dict({
            "client_id": [r.speaker for r in rows], "path": [r.clip for r in rows],
            "sentence": [r.sentence for r in rows], "audio": audio,
        }).cast_column("audio", datasets.Audio(sampling_rate=RATE, decode=False))
    saved = tmp_path / "cv-hf"
    datasets.DatasetDict(parts).save_to_disk(str(saved / "ja"))
    from_hf = cv.load(DatasetRequest("ja", 3, {"hf_dataset": str(saved), "train_hours": 1.0,
                                                     "max_clip_seconds": 4.0}, tmp_path / "c1"))
    from_release = _load(release, tmp_path / "c2", lang="ja", seed=3, train_hours=1.0)
    assert [u.id for u in from_hf.test] == [u.id for u in from_release.test]
    assert from_hf.skipped["train"] == {"undecodable_audio": 3, "empty_sentence": 2, "too_long": 1}
    assert sorted(u.id for u in from_hf.train) == sorted(u.id for u in from_release.train)
    np.testing.assert_array_equal(from_hf.test[0].audio, from_release.test[0].audio)
    assert "Hugging Face dataset" in from_hf.info["source"]


def test_unreachable_hub_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(BenchError, match="could not load the Hugging Face dataset") as info:
        # a hub id other than Mozilla's (those left the Hub: test_more_datasets) needs the hub
        cv.load(DatasetRequest("de", 0, {"hf_dataset": "some-lab/common-voice-copy"}, tmp_path))
    assert "save_to_disk" in info.value.hint


CV_TOML = """
[run]
models = ["tiny-wav2vec2"]
datasets = ["common_voice"]
langs = ["de", "ja", "ar"]
seeds = 2
store = "results.sqlite"
report_dir = "reports"

[train]
steps = 3
batch_seconds = 8.0

[datasets.common_voice]
release = "{release}"
train_hours = 0.006
max_clip_seconds = 4.0
"""


def test_bench_run_on_a_release_end_to_end(bench, release, tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text(CV_TOML.format(release=release))
    code, out, err = bench("run", "--config", str(config), "--datasets", "common_voice")
    assert code == 0, err
    assert "6 cells computed" in out and "; test: missing_clip 1" in err
    with ResultStore(tmp_path / "results.sqlite") as store:
        cells = store.cells()
    assert {(c.language, c.seed) for c in cells} == {(lang, s) for lang in ("de", "ja", "ar") for s in (0, 1)}
    for c in cells:
        data = c.record["data"]
        assert 0.006 <= data["train_hours"] < 0.006 + 2.01 / 3600
        assert data["train_speakers"] >= 1 and data["test_utterances"] == 5
        assert c.record["skipped"]["test"] == {"missing_clip": 1}
        assert 0.0 <= c.metrics["test"]["cer"] <= 5.0
        vocab = c.record["vocabulary"]
        if c.language == "ja":
            assert " " not in vocab and "。" not in vocab and "こ" in vocab  # no word boundaries, no punctuation
        if c.language == "de":
            assert " " in vocab and "G" not in vocab and "ß" in vocab and "," not in vocab
        if c.language == "ar":
            assert "؟" not in vocab and "،" not in vocab
        hyps = ResultStore(tmp_path / "results.sqlite").hypotheses(c.key, "test")
        refs = [ref for _, ref, _ in hyps]
        if c.language == "ja":
            assert "さようならまた明日" in refs
    code, out, err = bench("report", "--config", str(config))
    assert code == 0, err
    md = (tmp_path / "reports" / "matrix.md").read_text()
    assert "## Data" in md and "Japonic" in md
    assert "test:missing_clip 1" in md and "missing_clip 2" not in md  # as in one cell, not once per seed


def test_a_language_missing_from_the_release_fails_before_any_cell(bench, release, tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text(CV_TOML.format(release=release))
    code, out, err = bench("run", "--config", str(config), "--langs", "de,fr", "--seeds", "1")
    assert code == 2
    assert "has no language 'fr'" in err and "languages in it: ar, de, ja" in err
    assert not (tmp_path / "results.sqlite").exists() or not ResultStore(tmp_path / "results.sqlite").cells()
