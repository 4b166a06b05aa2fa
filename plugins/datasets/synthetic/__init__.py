"""The embedded default dataset: multilingual speech synthesised offline.

Sentences are word sequences sampled from wordfreq's lists; eSpeak NG speaks them with a
varied voice, rate and pitch; light noise is added. Output is 16 kHz mono float32 with
train/dev/test holding disjoint sentences, deterministic for ``corpus_seed`` and cached on
disk, so a second run does not synthesise again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import SAMPLING_RATE, DatasetRequest, DatasetSpec, DatasetSplits, Utterance
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from .words import LANGUAGES, sentence

VERSION = "1"

DEFAULTS: dict[str, Any] = {
    "train_minutes": 8.0,
    "dev_minutes": 1.0,
    "test_minutes": 1.5,
    "corpus_seed": 0,
    "vocabulary_size": 3000,
    "min_words": 2,
    "max_words": 6,
    #: signal-to-noise ratio range of the added white noise, in dB
    "snr_db": [20.0, 40.0],
    "rate": [130, 210],
    "pitch": [25, 75],
}
VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SPLITS = ("train", "dev", "test")


def _options(raw: dict[str, Any]) -> dict[str, Any]:
    options = {**DEFAULTS, **raw}
    for key in ("train_minutes", "dev_minutes", "test_minutes"):
        if not isinstance(options[key], (int, float)) or options[key] <= 0:
            raise BenchError(f"[datasets.synthetic] {key} must be a positive number of minutes, got {options[key]!r}")
    for key in ("snr_db", "rate", "pitch"):
        value = options[key]
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and value[0] <= value[1]):
            raise BenchError(f"[datasets.synthetic] {key} must be a range [low, high], got {value!r}")
    if not 1 <= options["min_words"] <= options["max_words"]:
        raise BenchError("[datasets.synthetic] needs 1 <= min_words <= max_words")
    return options


def _split_of(text: str) -> str:
    """Split by a hash of the sentence: the same sentence always lands in the same split."""
    bucket = zlib.crc32(text.encode("utf-8")) % 10
    return "train" if bucket < 8 else ("dev" if bucket == 8 else "test")


def _synthesise(code: str, options: dict[str, Any]) -> dict[str, list[Utterance]]:
    import soxr

    from .espeak import ESpeak

    engine = ESpeak.get()
    voice = LANGUAGES[code][1]
    seed = [int(options["corpus_seed"]), zlib.crc32(code.encode())]
    rng = np.random.default_rng(seed)
    targets = {s: options[f"{s}_minutes"] * 60 * SAMPLING_RATE for s in SPLITS}
    totals = dict.fromkeys(SPLITS, 0)
    seen: set[str] = set()
    out: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    attempts = 0
    while any(totals[s] < targets[s] for s in SPLITS):
        attempts += 1
        if attempts > 200_000:
            raise BenchError(f"could not make enough distinct sentences for {code!r}",
                             "raise datasets.synthetic.vocabulary_size or lower the minutes")
        text = sentence(code, rng, int(options["vocabulary_size"]), int(options["min_words"]),
                        int(options["max_words"]))
        split = _split_of(text)
        if text in seen or totals[split] >= targets[split]:
            continue
        seen.add(text)
        variant = VOICE_VARIANTS[int(rng.integers(len(VOICE_VARIANTS)))]
        rate = int(rng.integers(options["rate"][0], options["rate"][1] + 1))
        pitch = int(rng.integers(options["pitch"][0], options["pitch"][1] + 1))
        raw = engine.synthesize(text, f"{voice}+{variant}", rate=rate, pitch=pitch)
        if len(raw) == 0:
            continue
        audio = soxr.resample(raw.astype(np.float32) / 32768.0, engine.sample_rate, SAMPLING_RATE)
        lead, tail = rng.integers(0, SAMPLING_RATE // 5, size=2)
        audio = np.concatenate([np.zeros(lead, np.float32), audio, np.zeros(tail, np.float32)])
        power = float(np.mean(audio**2)) + 1e-12
        snr = rng.uniform(*options["snr_db"])
        audio = audio + rng.normal(0.0, np.sqrt(power / 10 ** (snr / 10)), size=len(audio))
        peak = 0.9 * audio / max(float(np.abs(audio).max()), 1e-6)
        # 16-bit quantisation here, so the int16 cache holds exactly what a fresh synthesis gives
        audio = (np.round(peak * 32767) / 32767).astype(np.float32)
        index = len(out[split])
        out[split].append(Utterance(f"{code}-{split}-{index:05d}", audio, text, speaker=variant))
        totals[split] += len(audio)
    return out


def _cache_file(cache_dir: Path, code: str, options: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps({"v": VERSION, "lang": code, **options}, sort_keys=True).encode())
    return cache_dir / f"{code}-{digest.hexdigest()[:16]}.npz"


def _save(path: Path, splits: dict[str, list[Utterance]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    meta = {}
    for split, utts in splits.items():
        audio = np.concatenate([u.audio for u in utts]) if utts else np.zeros(0, np.float32)
        arrays[f"{split}_audio"] = np.round(audio * 32767).astype(np.int16)
        arrays[f"{split}_lengths"] = np.array([len(u.audio) for u in utts], dtype=np.int64)
        meta[split] = [[u.id, u.text, u.speaker] for u in utts]
    arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)  # atomic: a killed run never leaves a half-written cache


def _load(path: Path) -> dict[str, list[Utterance]]:
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode("utf-8"))
        out = {}
        for split in SPLITS:
            audio = data[f"{split}_audio"].astype(np.float32) / 32767
            lengths = data[f"{split}_lengths"]
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            if offsets[-1] != len(audio) or len(lengths) != len(meta[split]):
                raise ValueError("inconsistent cache file")
            out[split] = [Utterance(uid, audio[offsets[i]:offsets[i + 1]], text, speaker)
                          for i, (uid, text, speaker) in enumerate(meta[split])]
    return out


def load(request: DatasetRequest) -> DatasetSplits:
    code = request.language
    if code not in LANGUAGES:
        raise BenchError(f"dataset 'synthetic' has no language {code!r}",
                         f"languages: {', '.join(LANGUAGES)}")
    options = _options(dict(request.options))
    path = _cache_file(request.cache_dir, code, options)
    splits = None
    if path.exists():
        try:
            splits = _load(path)
        except Exception as exc:  # corrupt or truncated cache: make it again, say so
            print(f"warning: synthetic cache {path} is unreadable ({exc}); synthesising again", file=sys.stderr)
    if splits is None:
        splits = _synthesise(code, options)
        _save(path, splits)
    info = {
        "source": "synthetic (eSpeak NG + wordfreq)",
        "cache": str(path),
        **{f"{s}_hours": sum(u.seconds for u in splits[s]) / 3600 for s in SPLITS},
        **{f"{s}_utterances": len(splits[s]) for s in SPLITS},
        "speakers": len({u.speaker for s in SPLITS for u in splits[s]}),
    }
    return DatasetSplits(splits["train"], splits["dev"], splits["test"], info)


@hookimpl
def bench_register_datasets(register) -> None:
    register(
        DatasetSpec(
            name="synthetic",
            languages=tuple(LANGUAGES),
            load=load,
            version=VERSION,
            description="speech synthesised offline (eSpeak NG voices, wordfreq sentences)",
            options=tuple(DEFAULTS),
        )
    )
