"""The embedded default dataset: multilingual speech synthesised offline.

Sentences are word sequences sampled from wordfreq's lists; eSpeak NG speaks them with a
varied voice, rate and pitch; light noise is added. Output is 16 kHz mono float32 with
train/dev/test holding disjoint sentences, deterministic for ``corpus_seed`` and cached on
disk, so a second run does not synthesise again.

It reads no manifest and no audio file, so the rule that manifest paths stay inside their
corpus (:mod:`harness.data.paths`, applied by common_voice, fleurs and hf) has nothing to
check here: every utterance is made in memory.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
from pathlib import Path
from typing import Any

from harness.api import DatasetRequest, DatasetSpec, DatasetSplits, Utterance
from harness.errors import BenchError
from harness.hookspecs import hookimpl
from harness.data.utterance_cache import load_or_none, save_utterances
from plugins.datasets import rows_digest

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
        except generate.SynthesisError as exc:
            raise BenchError(*exc.args) from None
    return {split: [Utterance(*row) for row in items] for split, items in rows.items()}

def _cache_file(cache_dir: Path, code: str, options: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps({"v": VERSION, "lang": code, **options}, sort_keys=True).encode())
    return cache_dir / f"{code}-{digest.hexdigest()[:16]}.npz"

def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def fingerprint(request: DatasetRequest) -> dict[str, Any]:
    """What decides the speech: the generator's version, the options with the defaults filled in,
    and the versions of the voices (espeakng-loader) and word lists (wordfreq)."""
    return {"generator": VERSION, "options": _options(dict(request.options)),
            "espeakng-loader": _version("espeakng-loader"), "wordfreq": _version("wordfreq")}


def load(request: DatasetRequest) -> DatasetSplits:
    code = request.language
    if code not in LANGUAGES:
        raise BenchError(f"dataset 'synthetic' has no language {code!r}",
                         f"languages: {', '.join(LANGUAGES)}")
    options = _options(dict(request.options))
    path = _cache_file(request.cache_dir, code, options)
    cached = load_or_none(path, "synthetic")
    splits = cached[0] if cached else None
    if splits is None or set(splits) != set(SPLITS):
        splits = _synthesise(code, options)
        save_utterances(path, splits)
    info = {
        "source": "synthetic (eSpeak NG + wordfreq)",
        "cache": str(path),
        **{f"{s}_hours": sum(u.seconds for u in splits[s]) / 3600 for s in SPLITS},
        **{f"{s}_utterances": len(splits[s]) for s in SPLITS},
        "speakers": len({u.speaker for s in SPLITS for u in splits[s]}),
        "rows_sha256": {s: rows_digest(splits[s]) for s in SPLITS},
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
            fingerprint=fingerprint,
        )
    )
