"""The embedded default dataset: multilingual speech synthesised offline.

Sentences are word sequences sampled from wordfreq's lists; eSpeak NG speaks them with a
varied voice, rate and pitch; light noise is added. Output is 16 kHz mono float32 with
train/dev/test holding disjoint sentences, deterministic for ``corpus_seed`` and cached on
disk, so a second run does not synthesise again.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import SAMPLING_RATE, DatasetRequest, DatasetSpec, DatasetSplits, Utterance
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from . import generate
from .generate import SPLITS
from .words import LANGUAGES

VERSION = "2"

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


def _synthesise(code: str, options: dict[str, Any]) -> dict[str, list[Utterance]]:
    """Synthesise one language in a fresh worker process.

    eSpeak NG carries hidden state from one synthesis to the next inside a process, so the
    same call sequence gives the same audio only from the same starting state: a new process.
    """
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            rows = pool.submit(generate.synthesise, code, options).result()
        except RuntimeError as exc:
            raise BenchError(str(exc).split("; ")[0], str(exc).split("; ")[-1]) from None
    return {split: [Utterance(*row) for row in items] for split, items in rows.items()}


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
