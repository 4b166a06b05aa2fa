"""Datasets beyond Common Voice (issue 25): FLEURS in both layouts, any local Hugging Face dataset
(``hf``: save_to_disk, audiofolder), Common Voice's Data Collective releases, and manifests
whose audio paths cannot leave their corpus (planted absolute, ``..`` and symlinked rows).

Every fixture is written here: 16 kHz WAV tones with soundfile, tsv files, tar.gz archives,
datasets saved with ``save_to_disk``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.api import DatasetRequest
from harness.data.fleurs_languages import FLEURS_LANGUAGES
from harness.data.paths import PATH_OUTSIDE_CORPUS, inside
from harness.engine.text import normalize
from harness.errors import BenchError
from harness.languages import language
from harness.store.results import ResultStore
from plugins.datasets import audio as audio_mod
from plugins.datasets import common_voice as cv
from plugins.datasets import fleurs
from plugins.datasets import hf as hf_plugin

RATE = 16_000
#: FLoRes-style parallel sentences: the same ids in every language
SENTENCES = {
    "de_de": ["guten morgen welt", "das wetter ist schön", "ein tag am meer", "gute nacht", "wie geht es dir",
              "danke sehr"],
    "es_419": ["buenos días mundo", "el tiempo es bueno", "un día en el mar", "buenas noches", "cómo estás",
               "muchas gracias"],
    "th_th": ["สวัสดี ชาวโลก", "อากาศ ดี", "วัน ที่ ทะเล", "ราตรี สวัสดิ์", "สบาย ดี ไหม", "ขอบคุณ มาก"],
}


def tone(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A valid wav outside every corpus: reading it would make a perfectly usable utterance."""
    path = tmp_path_factory.mktemp("outside") / "secret.wav"
    sf.write(path, tone(1.0, 99), RATE)
    return path


@pytest.fixture()
def opened(monkeypatch) -> list:
    """Every audio source handed to the decoder."""
    seen: list = []
    real = audio_mod.decode

    def spy(source):
        seen.append(source)
        return real(source)

    monkeypatch.setattr(audio_mod, "decode", spy)
    return seen


def _never_outside(seen: list, outside: Path) -> None:
    names = [str(s) for s in seen if isinstance(s, (str, Path))]
    assert names and not any(Path(n).resolve() == outside.resolve() for n in names)


# --------------------------------------------------------------------------- the shared helper
def test_inside_refuses_absolute_dotdot_and_symlinks_out(tmp_path, outside):
    corpus = tmp_path / "corpus"
    (corpus / "clips").mkdir(parents=True)
    (corpus / "clips" / "a.wav").write_bytes(b"x")
    os.symlink(outside, corpus / "clips" / "link.wav")
    os.symlink(corpus / "clips" / "a.wav", corpus / "clips" / "inner.wav")
    assert inside(corpus, "a.wav", base=corpus / "clips") == (corpus / "clips" / "a.wav").resolve()
    assert inside(corpus, "inner.wav", base=corpus / "clips") is not None  # a link that stays inside
    assert inside(corpus, "../clips/a.wav", base=corpus / "clips") is not None  # `..` that stays inside
    for name in (str(outside), "../../outside/secret.wav", "link.wav", "", "a\x00.wav",
                 os.path.relpath(outside, corpus / "clips")):
        assert inside(corpus, name, base=corpus / "clips") is None, name
    assert inside(corpus, str(corpus / "clips" / "a.wav")) is None  # absolute: refused unless allowed
    assert inside(corpus, str(corpus / "clips" / "a.wav"), absolute_ok=True) is not None
    assert inside(corpus, str(outside), absolute_ok=True) is None


# --------------------------------------------------------------------------- language metadata
def test_fleurs_languages_all_102_with_unspaced_scripts_marked():
    assert len(FLEURS_LANGUAGES) == 102
    assert {"es_419", "cmn_hans_cn", "de_de", "yue_hant_hk", "my_mm", "km_kh", "lo_la"} <= set(FLEURS_LANGUAGES)
    unspaced = {c for c, lang in FLEURS_LANGUAGES.items() if not lang.spaced}
    assert unspaced == {"cmn_hans_cn", "yue_hant_hk", "ja_jp", "th_th", "lo_la", "km_kh", "my_mm"}
    assert language("es_419").subgroup == "Romance" and language("es_419").indo_european
    assert language("cmn_hans_cn").family == "Sino-Tibetan" and language("hi_in").script == "Devanagari"
    # the normaliser reads the table: no spaces in Burmese, case folding only where the script has case
    assert normalize("က ခ, ဂ", "my_mm") == "ကခဂ"
    assert normalize("Guten Morgen!", "de_de") == "guten morgen"
    assert normalize("Καλημέρα Κόσμε", "el_gr") == "καλημέρα κόσμε"


# --------------------------------------------------------------------------- FLEURS, published folders
def make_fleurs(root: Path, lang: str, archive: bool, outside: Path | None = None, n_train: int = 12) -> Path:
    """<root>/<lang>/{train,dev,test}.tsv + audio/<split>/ (or audio/<split>.tar.gz); FLEURS's
    headerless columns. Sentence i has the id 1000 + i in every language (parallel)."""
    ldir = root / lang
    (ldir / "audio").mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "dev": 3, "test": 3}
    for split, n in counts.items():
        folder = ldir / "audio" / split
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            sid = i % 4 if split == "train" else 4 + i % 2
            name = f"{abs(hash((lang, split, i))) % 10**12}.wav"
            sf.write(folder / name, tone(1.0 + (i % 3) * 0.25, i + len(split)), RATE)
            raw = SENTENCES[lang][sid].capitalize() + "."
            lines.append([str(1000 + sid), name, raw, SENTENCES[lang][sid], "|".join(SENTENCES[lang][sid]),
                          str(RATE), "FEMALE"])
        if split == "train":
            sf.write(folder / "long.wav", tone(6.0, 1), RATE)
            lines += [
                ["1000", "missing.wav", "x", SENTENCES[lang][0], "", "0", "MALE"],
                ["1001", "long.wav", "x", SENTENCES[lang][1], "", "0", "MALE"],
                ["1002", lines[0][1], "x", SENTENCES[lang][2], "", "0", "MALE"],  # the same wav again
                ["1003", "silent.wav", "", "", "", "0", "MALE"],  # empty transcript
            ]
            if outside is not None:
                os.symlink(outside, folder / "link.wav")
                lines += [["1000", str(outside), "x", SENTENCES[lang][0], "", "0", "MALE"],
                          ["1001", os.path.relpath(outside, folder), "x", SENTENCES[lang][1], "", "0", "MALE"],
                          ["1002", "link.wav", "x", SENTENCES[lang][2], "", "0", "MALE"]]
        if split == "test" and outside is not None:
            lines.append(["1004", str(outside), "x", SENTENCES[lang][4], "", "0", "MALE"])
        with (ldir / f"{split}.tsv").open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n").writerows(lines)
        if archive:
            with tarfile.open(ldir / "audio" / f"{split}.tar.gz", "w:gz") as tar:
                for wav in sorted(folder.iterdir()):
                    tar.add(wav, arcname=f"{split}/{wav.name}")  # a symlink is stored as a link member
                evil = tarfile.TarInfo("../../escaped.wav")
                payload = b"RIFF-not-really"
                evil.size = len(payload)
                tar.addfile(evil, io.BytesIO(payload))
            shutil.rmtree(folder)
    return ldir


@pytest.fixture(scope="module", params=["extracted", "archives"])
def fleurs_root(request, tmp_path_factory, outside) -> Path:
    root = tmp_path_factory.mktemp("fleurs") / "data"
    for lang in ("de_de", "es_419", "th_th"):
        make_fleurs(root, lang, archive=request.param == "archives", outside=outside)
    return root


def _fleurs(root, tmp_path, lang="de_de", seed=0, **options):
    opts = {"root": str(root), "train_hours": 1.0, "max_clip_seconds": 4.0, **options}
    return fleurs.load(DatasetRequest(lang, seed, opts, tmp_path / "cache"))


def test_fleurs_folders_skip_and_count_every_bad_row_and_never_open_outside(fleurs_root, tmp_path, outside, opened):
    data = _fleurs(fleurs_root, tmp_path)
    archived = not (fleurs_root / "de_de" / "audio" / "train").is_dir()
    expected = {"missing_clip": 1, "too_long": 1, "duplicate": 1, "empty_sentence": 1,
                PATH_OUTSIDE_CORPUS: 2 if archived else 3}
    if archived:
        expected["missing_clip"] += 1  # the symlink member is left out of the extraction
    assert data.skipped["train"] == expected
    assert data.skipped["test"] == {PATH_OUTSIDE_CORPUS: 1}
    assert len(data.train) == 12 and len(data.dev) == 3 and len(data.test) == 3
    assert data.train[0].text in SENTENCES["de_de"]  # the normalised transcription column
    assert "parallel" in data.info["parallel_sentences"].lower() or "same" in data.info["parallel_sentences"]
    _never_outside(opened, outside)
    if archived:  # the `..` member was not written outside the extraction folder
        assert not any((tmp_path / "cache").rglob("escaped.wav"))
        assert not (tmp_path / "escaped.wav").exists()


def test_fleurs_raw_transcription_fingerprint_and_missing_language(fleurs_root, tmp_path):
    raw = _fleurs(fleurs_root, tmp_path, transcript="raw_transcription")
    assert raw.test[0].text[0].isupper() and raw.test[0].text.endswith(".")
    request = DatasetRequest("de_de", 0, {"root": str(fleurs_root)}, tmp_path)
    first = fleurs.fingerprint(request)
    assert first["fleurs"] == "de_de" and set(first["tsv_sha256"]) == {"train.tsv", "dev.tsv", "test.tsv"}
    assert fleurs.fingerprint(DatasetRequest("es_419", 0, {"root": str(fleurs_root)}, tmp_path)) != first
    with pytest.raises(BenchError, match="has no language 'fr_fr'") as info:
        fleurs.check(DatasetRequest("fr_fr", 0, {"root": str(fleurs_root)}, tmp_path))
    assert "languages in it: de_de, es_419, th_th" in info.value.hint
    with pytest.raises(BenchError, match="no language 'xx'"):
        fleurs.check(DatasetRequest("xx", 0, {"root": str(fleurs_root)}, tmp_path))
    assert fleurs.languages_of({"root": str(fleurs_root.parent)}) == ("de_de", "es_419", "th_th")  # the repo top


def test_fleurs_thai_has_no_spaces_in_its_transcripts(fleurs_root, tmp_path):
    data = _fleurs(fleurs_root, tmp_path, lang="th_th")
    assert all(" " not in normalize(u.text, "th_th") for u in data.test)


# --------------------------------------------------------------------------- FLEURS, Hugging Face layout
def make_fleurs_hf(directory: Path, folder_root: Path, lang: str, outside: Path) -> Path:
    """FLEURS's Hugging Face schema saved per language with save_to_disk, from the folder fixture."""
    datasets = pytest.importorskip("datasets")
    source = fleurs.sources.FolderSource(str(folder_root), lang, directory / "x", "transcription")
    parts = {}
    for split, name in (("train", "train"), ("dev", "validation"), ("test", "test")):
        base = folder_root / lang / "audio" / split
        # save_to_disk embeds every file an Audio column names, so rows without a wav of their own
        # are left out here (planted paths in a saved dataset are tested with hf below)
        kept = [(r, i) for r, i in zip(source.rows(split), source.sentence_ids(split))
                if (base / r.clip).is_file() and not (base / r.clip).is_symlink() and not os.path.isabs(r.clip)
                and ".." not in r.clip]
        rows, ids = [r for r, _ in kept], [i for _, i in kept]
        audios = [{"bytes": None, "path": str(base / r.clip)} for r in rows]
        parts[name] = datasets.Dataset.from_dict({
            "id": [int(i) for i in ids], "num_samples": [0] * len(rows),
            "path": [f"/root/.cache/huggingface/extracted/{split}/{r.clip}" for r in rows],
            "audio": audios, "transcription": [r.sentence for r in rows],
            "raw_transcription": [r.sentence.capitalize() for r in rows], "gender": [1] * len(rows),
            "lang_id": [7] * len(rows),
        }).cast_column("audio", datasets.Audio(sampling_rate=RATE, decode=False))
    datasets.DatasetDict(parts).save_to_disk(str(directory / lang))
    return directory


def test_fleurs_hugging_face_layout_matches_the_folders(tmp_path, tmp_path_factory, outside, opened):
    root = tmp_path / "data"
    for lang in ("de_de", "es_419"):
        make_fleurs(root, lang, archive=False, outside=outside)
        make_fleurs_hf(tmp_path / "hf", root, lang, outside)
    from_hf = fleurs.load(DatasetRequest("es_419", 0, {"hf_dataset": str(tmp_path / "hf"), "train_hours": 1.0,
                                                       "max_clip_seconds": 4.0}, tmp_path / "c1"))
    from_folder = _fleurs(root, tmp_path / "c2", lang="es_419")
    assert [u.id for u in from_hf.test] == [u.id for u in from_folder.test]  # ids: the wavs' file names
    assert sorted(u.id for u in from_hf.train) == sorted(u.id for u in from_folder.train)
    np.testing.assert_array_equal(from_hf.test[0].audio, from_folder.test[0].audio)
    assert from_hf.skipped["train"] == {"too_long": 1, "duplicate": 1} and not from_hf.skipped["test"]
    assert fleurs.languages_of({"hf_dataset": str(tmp_path / "hf")}) == ("de_de", "es_419")
    assert fleurs.fingerprint(DatasetRequest("de_de", 0, {"hf_dataset": str(tmp_path / "hf")}, tmp_path))["splits"]
    _never_outside(opened, outside)


# --------------------------------------------------------------------------- Common Voice
def test_common_voice_planted_paths_are_skipped_and_counted(tmp_path, outside, opened):
    from test_common_voice import make_release

    release = make_release(tmp_path, "de", train=8, dev=3, test=3, bad=False, name="cv-corpus-23.0-2025-09-05")
    clips = release / "de" / "clips"
    os.symlink(outside, clips / "link.mp3")
    with (release / "de" / "train.tsv").open("a", encoding="utf-8") as handle:
        for name in (str(outside), "../../../" + outside.parent.name + "/secret.wav",
                     os.path.relpath(outside, clips), "link.mp3"):
            handle.write(f"x\t{name}\t\tGuten Morgen\n")
    with (release / "de" / "test.tsv").open("a", encoding="utf-8") as handle:
        handle.write(f"y\t{outside}\t\tGute Nacht\n")
    data = cv.load(DatasetRequest("de", 0, {"release": str(release), "train_hours": 1.0}, tmp_path / "cache"))
    assert data.skipped["train"] == {PATH_OUTSIDE_CORPUS: 4} and len(data.train) == 8
    assert data.skipped["test"] == {PATH_OUTSIDE_CORPUS: 1} and len(data.test) == 3
    _never_outside(opened, outside)


def test_common_voice_data_collective_release_layout(tmp_path):
    """A Data Collective download unpacks to cv-corpus-<version>-<date>/<locale>/ as before, with
    more tsv files beside the splits; the archive itself is refused with the command to unpack it."""
    from test_common_voice import make_release

    release = make_release(tmp_path, "de", train=6, dev=2, test=2, bad=False, name="cv-corpus-23.0-2025-09-05")
    for extra in ("validated_sentences.tsv", "unvalidated_sentences.tsv", "clip_durations.tsv", "reported.tsv"):
        (release / "de" / extra).write_text("sentence_id\tsentence\n")
    data = cv.load(DatasetRequest("de", 0, {"release": str(tmp_path), "train_hours": 1.0}, tmp_path / "cache"))
    assert "cv-corpus-23.0-2025-09-05" in data.info["source"] and len(data.train) == 6
    assert cv.fingerprint(DatasetRequest("de", 0, {"release": str(release)}, tmp_path))["release"] \
        == "cv-corpus-23.0-2025-09-05"
    archive = tmp_path / "cv-corpus-23.0-2025-09-05-de.tar.gz"
    archive.write_bytes(b"\x1f\x8b")
    with pytest.raises(BenchError, match="is a Common Voice archive") as info:
        cv.check(DatasetRequest("de", 0, {"release": str(archive)}, tmp_path))
    assert "tar -xzf" in info.value.hint


def test_common_voice_hub_ids_that_left_the_hub_say_where_to_go(tmp_path):
    with pytest.raises(BenchError, match="Common Voice left the Hugging Face Hub") as info:
        cv.check(DatasetRequest("de", 0, {"hf_dataset": "mozilla-foundation/common_voice_17_0"}, tmp_path))
    assert "Mozilla Data Collective" in info.value.hint and "release =" in info.value.hint


# --------------------------------------------------------------------------- hf: save_to_disk and audiofolder
def make_hf_saved(directory: Path, outside: Path) -> Path:
    """One multilingual dataset saved with save_to_disk (a ``locale`` column); its audio column
    ``file`` holds paths relative to the dataset (24 kHz FLAC), plus planted rows whose paths
    leave it (absolute, ``..``)."""
    datasets = pytest.importorskip("datasets")
    audio_dir = directory / "audio"
    audio_dir.mkdir(parents=True)
    parts = {}
    k = 0
    for split, n in (("train", 8), ("validation", 2), ("test", 2)):
        rows = {"file": [], "text": [], "speaker_id": [], "locale": [], "id": []}
        for lang, words in (("de", SENTENCES["de_de"]), ("es", SENTENCES["es_419"])):
            for i in range(n):
                k += 1
                name = f"{lang}-{split}-{i}.flac"
                sf.write(audio_dir / name, tone(1.0, k, 24_000), 24_000, format="FLAC")  # resampled on read
                rows["file"].append(f"audio/{name}")
                rows["text"].append(words[i % 6])
                rows["speaker_id"].append(f"{lang}-spk{i % 2}")
                rows["locale"].append(lang)
                rows["id"].append(name)
        if split in ("train", "test"):
            for j, path in enumerate((str(outside), "../" + os.path.relpath(outside, directory.parent))):
                rows["file"].append(path)
                rows["text"].append("hola")
                rows["speaker_id"].append("x")
                rows["locale"].append("es")
                rows["id"].append(f"planted-{split}-{j}")
        parts[split] = datasets.Dataset.from_dict(rows)
    datasets.DatasetDict(parts).save_to_disk(str(directory))
    return directory


@pytest.fixture(scope="module")
def hf_saved(tmp_path_factory, outside) -> Path:
    return make_hf_saved(tmp_path_factory.mktemp("hf") / "corpus", outside)


def test_hf_saved_to_disk_with_a_language_column(hf_saved, tmp_path, outside, opened):
    options = {"path": str(hf_saved), "audio_column": "file", "language_column": "locale",
               "languages": {"es_419": "es", "de_de": "de"}, "train_hours": 1.0}
    data = hf_plugin.load(DatasetRequest("es_419", 0, options, tmp_path / "cache"))
    assert len(data.train) == 8 and len(data.dev) == 2 and len(data.test) == 2
    assert {u.speaker for u in data.train} == {"es-spk0", "es-spk1"}
    assert data.skipped["train"] == {PATH_OUTSIDE_CORPUS: 2} and data.skipped["test"] == {PATH_OUTSIDE_CORPUS: 2}
    assert abs(data.train[0].seconds - 1.0) < 1e-3  # 24 kHz FLAC resampled to 16 kHz
    _never_outside(opened, outside)
    assert hf_plugin.languages_of(options) == ("es_419", "de_de")
    assert hf_plugin.languages_of({"path": str(hf_saved), "audio_column": "file", "language_column": "locale"}) == ("de", "es")
    ident = hf_plugin.fingerprint(DatasetRequest("es_419", 0, options, tmp_path))
    assert ident["language"] == "es" and ident["splits"]["train"]["rows"] == 10 and ident["splits"]["train"]["fingerprint"]
    assert ident != hf_plugin.fingerprint(DatasetRequest("de_de", 0, options, tmp_path))


@pytest.mark.parametrize(("options", "message"), [
    ({"path": ""}, "has no path configured"),
    ({"path": "/nonexistent/dataset"}, "does not exist"),
    ({"text_column": "words"}, "has no text column 'words'"),
    ({"splits": {"dev": "held_out"}}, "has no dev split"),
    ({"builder": "tsv"}, "builder must be one of"),
    ({"languages": 3}, "languages must be a list"),
])
def test_hf_configuration_errors(hf_saved, tmp_path, options, message):
    with pytest.raises(BenchError, match=message) as info:
        hf_plugin.check(DatasetRequest("de", 0, {"path": str(hf_saved), "audio_column": "file", "languages": ["de"],
                                                 **options}, tmp_path))
    assert info.value.hint


def test_hf_without_languages_says_how_to_name_them(hf_saved):
    with pytest.raises(BenchError, match="does not know its languages") as info:
        hf_plugin.languages_of({"path": str(hf_saved)})
    assert "languages = " in info.value.hint


def make_audiofolder(directory: Path, lang: str, outside: Path) -> Path:
    """``<dir>/{train,test,validation}/`` with wavs and a metadata.csv (file_name, transcription),
    planted rows included."""
    k = 0
    for split, n in (("train", 6), ("validation", 2), ("test", 2)):
        folder = directory / split
        folder.mkdir(parents=True)
        lines = ["file_name,transcription"]
        for i in range(n):
            k += 1
            sf.write(folder / f"{split}{i}.wav", tone(1.0, k), RATE)
            lines.append(f"{split}{i}.wav,{SENTENCES[lang][i % 6]}")
        if split == "train":  # planted: a file name leading out of the folder, and an absolute one
            lines += [f"{os.path.relpath(outside, folder)},{SENTENCES[lang][0]}", f"{outside},{SENTENCES[lang][1]}"]
        (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return directory


def test_hf_audiofolder(tmp_path, outside, opened):
    pytest.importorskip("datasets")
    folder = make_audiofolder(tmp_path / "af", "de_de", outside)
    options = {"path": str(folder), "languages": ["de_de"], "train_hours": 1.0}
    data = hf_plugin.load(DatasetRequest("de_de", 0, options, tmp_path / "cache"))
    assert len(data.train) == 6 and len(data.dev) == 2 and len(data.test) == 2
    assert data.skipped["train"] == {PATH_OUTSIDE_CORPUS: 2}
    assert {u.text for u in data.test} == {SENTENCES["de_de"][0], SENTENCES["de_de"][1]}
    # audio outside the folder: the same dataset read with audio_root elsewhere refuses every row
    with pytest.raises(BenchError, match="no usable train utterances.*path_outside_corpus"):
        hf_plugin.load(DatasetRequest("de_de", 0, {**options, "audio_root": str(tmp_path / "elsewhere")},
                                      tmp_path / "cache2"))
    _never_outside(opened, outside)


def test_hf_parquet_with_audio_paths_planted_outside(tmp_path, outside, opened):
    """Parquet files whose audio column holds {bytes, path} with paths only (as written by a
    datasets export that did not embed the files)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    folder = tmp_path / "pq"
    (folder / "clips").mkdir(parents=True)
    for split, n in (("train", 4), ("validation", 1), ("test", 2)):
        paths = []
        for i in range(n):
            name = f"clip{len(split)}{i}.wav"  # no split word in the name: datasets would take it for an audiofolder
            sf.write(folder / "clips" / name, tone(1.0, i), RATE)
            paths.append(f"clips/{name}")
        paths += [str(outside), os.path.relpath(outside, folder)]
        table = pa.table({"audio": [{"bytes": None, "path": p} for p in paths],
                          "sentence": [SENTENCES["es_419"][i % 6] for i in range(len(paths))]})
        pq.write_table(table, folder / f"{split}.parquet")
    data = hf_plugin.load(DatasetRequest("es", 0, {"path": str(folder), "languages": ["es"], "train_hours": 1.0},
                                         tmp_path / "cache"))
    assert len(data.train) == 4 and len(data.test) == 2
    assert data.skipped["train"] == data.skipped["test"] == {PATH_OUTSIDE_CORPUS: 2}
    _never_outside(opened, outside)


# --------------------------------------------------------------------------- the CLI
FLEURS_TOML = """
[run]
models = ["tiny-wav2vec2"]
datasets = ["fleurs"]
langs = ["all"]
seeds = 1
store = "results.sqlite"
report_dir = "reports"

[train]
steps = 3
batch_seconds = 8.0

[datasets.fleurs]
root = "{root}"
train_hours = 0.003
max_clip_seconds = 4.0
"""


def test_list_shows_fleurs_and_hf(bench):
    code, out, err = bench("list", "--datasets")
    assert code == 0, err
    lines = out.splitlines()
    assert any(l.startswith("fleurs ") for l in lines) and any(l.startswith("hf ") for l in lines)
    assert "es_419" in out and "cmn_hans_cn" in out


def test_fleurs_langs_all_dry_run_plans_the_languages_present(bench, tmp_path, outside):
    root = tmp_path / "data"
    for lang in ("de_de", "th_th"):
        make_fleurs(root, lang, archive=False, outside=outside, n_train=4)
    config = tmp_path / "bench.toml"
    config.write_text(FLEURS_TOML.format(root=root))
    code, out, err = bench("run", "--config", str(config), "--datasets", "fleurs", "--langs", "all", "--dry-run")
    assert code == 0, err
    assert "de_de" in out and "th_th" in out and "es_419" not in out
    code, out, err = bench("run", "--config", str(config), "--langs", "de_de,fr_fr", "--dry-run")
    assert code == 2 and "has no language 'fr_fr'" in err and "Languages of fleurs: de_de, th_th" in err


@pytest.mark.slow
def test_tiny_matrix_on_fleurs_and_hf_and_the_report(bench, tmp_path, outside):
    root = tmp_path / "data"
    for lang in ("de_de", "es_419"):
        make_fleurs(root, lang, archive=True, outside=outside, n_train=6)
    hf_dir = make_hf_saved(tmp_path / "hf", outside)
    config = tmp_path / "bench.toml"
    config.write_text(FLEURS_TOML.format(root=root).replace('datasets = ["fleurs"]', 'datasets = ["fleurs", "hf"]') + f"""
[datasets.hf]
path = "{hf_dir}"
audio_column = "file"
language_column = "locale"
languages = {{de = "de", es = "es"}}
train_hours = 0.003
""")
    code, out, err = bench("run", "--config", str(config))
    assert code == 0, err
    assert "4 cells computed" in out
    with ResultStore(tmp_path / "results.sqlite") as store:
        cells = store.cells()
    assert {(c.dataset, c.language) for c in cells} == {("fleurs", "de_de"), ("fleurs", "es_419"), ("hf", "de"),
                                                         ("hf", "es")}
    for c in cells:
        planted = {"fleurs": 1, "hf": 2 if c.language == "es" else 0}[c.dataset]  # hf's planted rows are es rows
        assert c.record["skipped"].get("test", {}) == ({PATH_OUTSIDE_CORPUS: planted} if planted else {})
        assert 0.0 <= c.metrics["test"]["cer"] <= 5.0
    code, out, err = bench("report", "--config", str(config))
    assert code == 0, err
    md = (tmp_path / "reports" / "matrix.md").read_text()
    assert "fleurs:de_de" in md and "hf:es" in md
    assert "test:path_outside_corpus 1" in md and "test:path_outside_corpus 2" in md
    assert "fleurs: de_de, es_419 read parallel sentences" in md
