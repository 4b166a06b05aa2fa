import numpy as np
import pytest

from harness.api import SAMPLING_RATE, DatasetRequest
from harness.languages import STUDY_LANGUAGES
from plugins.datasets import synthetic
from plugins.espeak import ESpeak
from plugins.datasets.synthetic.words import LANGUAGES

SMALL = {"train_minutes": 0.4, "dev_minutes": 0.2, "test_minutes": 0.2}


def _load(tmp_path, lang="de", **options):
    return synthetic.load(DatasetRequest(lang, 0, {**SMALL, **options}, tmp_path))


def test_covers_at_least_16_study_languages():
    assert len(set(LANGUAGES) & set(STUDY_LANGUAGES)) >= 16


def test_audio_format_sizes_and_disjoint_sentences(tmp_path):
    data = _load(tmp_path)
    for split, minutes in (("train", 0.4), ("dev", 0.2), ("test", 0.2)):
        utts = getattr(data, split)
        seconds = sum(u.seconds for u in utts)
        assert minutes * 60 <= seconds <= minutes * 60 + 10
        for u in utts:
            assert u.audio.dtype == np.float32 and u.audio.ndim == 1 and np.isfinite(u.audio).all()
            assert 0 < np.abs(u.audio).max() <= 1.0
    texts = {s: {u.text for u in getattr(data, s)} for s in ("train", "dev", "test")}
    assert not (texts["train"] & texts["dev"]) and not (texts["train"] & texts["test"]) and not (texts["dev"] & texts["test"])
    assert len({u.speaker for u in data.train}) > 3  # voices vary


def test_sample_rate_is_16k_from_espeak_22k():
    engine = ESpeak.get()
    raw = engine.synthesize("guten tag", "de")
    assert engine.sample_rate == 22_050 and raw.dtype == np.int16 and len(raw) > 0.3 * 22_050
    assert SAMPLING_RATE == 16_000


def test_deterministic_for_a_seed_and_cached(tmp_path, monkeypatch):
    first = _load(tmp_path / "a")
    again = _load(tmp_path / "b")  # fresh synthesis, other cache
    assert [u.text for u in first.train] == [u.text for u in again.train]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(first.test, again.test))
    other = _load(tmp_path / "c", corpus_seed=1)
    assert [u.text for u in other.train] != [u.text for u in first.train]

    def no_synthesis(*args, **kwargs):
        raise AssertionError("synthesised again although cached")

    monkeypatch.setattr(synthetic, "_synthesise", no_synthesis)
    cached = _load(tmp_path / "a")
    assert [u.id for u in cached.train] == [u.id for u in first.train]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(first.train, cached.train))


def test_corrupt_cache_is_made_again(tmp_path, capsys):
    _load(tmp_path)
    (cache,) = tmp_path.glob("*.npz")
    cache.write_bytes(b"not a zip file")
    data = _load(tmp_path)
    assert len(data.train) > 0 and "unreadable" in capsys.readouterr().err


@pytest.mark.parametrize("lang", ["ja", "zh-CN", "ar", "ru"])
def test_non_latin_scripts(tmp_path, lang):
    data = _load(tmp_path, lang, train_minutes=0.1, dev_minutes=0.05, test_minutes=0.05)
    text = data.train[0].text
    assert text and not any("a" <= c.lower() <= "z" for c in text)
    if lang in {"ja", "zh-CN"}:
        assert " " not in text  # written without spaces


def test_phonemes_in_ipa():
    assert "ʃ" in ESpeak.get().phonemes("schön", "de")
