"""Common Voice with the study's data protocol.

Reads an unpacked official release (``cv-corpus-<version>/<lang>/*.tsv`` and ``clips/*.mp3``)
or a Hugging Face dataset in the Common Voice schema. Per cell it draws a training subset of
``train_hours`` from the train split, in an order fixed by the cell's seed, and takes dev and
test as released (optionally capped, the same for every seed). Only the clips used are
decoded (libsndfile reads MP3; soxr resamples to 16 kHz), once: the decoded audio is cached.

Rows that cannot be used are skipped and counted, by reason, in the cell's record: a missing
clip, undecodable audio, an empty sentence (after normalisation), a clip longer than
``max_clip_seconds`` or a row repeating a clip already met in the split (``duplicate``). A
skipped training row is replaced by the next one in the draw.

The data's identity (:func:`fingerprint`: the release's name, the language and a SHA-256 of the
content of the tsv files used, or a Hugging Face dataset's fingerprints) is part of every cell's
key, and each cell's record holds a digest of the rows it used (``data["rows_sha256"]``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.api import SAMPLING_RATE, DatasetRequest, DatasetSpec, DatasetSplits, DownloadItem, Utterance
from harness.errors import BenchError
from harness.hookspecs import hookimpl
from harness.languages import STUDY_LANGUAGES
from harness.engine.text import normalize
from harness.data.utterance_cache import load_or_none, save_utterances
from plugins.datasets import rows_digest

from .audio import ClipSkipped, decode
from .sources import MANUAL_STEPS, HFSource, ReleaseSource, Row, Source, _load_hf

#: 2: duplicate rows (the same clip twice in a split) are dropped and counted
VERSION = "2"

DEFAULTS: dict[str, Any] = {
    #: unpacked release directory (cv-corpus-<version>); else $BENCH_COMMON_VOICE
    "release": "",
    #: or a Hugging Face dataset: hub id or a local directory (save_to_disk or data files)
    "hf_dataset": "",
    #: its configuration name; empty: the language code
    "hf_config": "",
    #: hours of training audio drawn per cell (the study: 5)
    "train_hours": 5.0,
    #: where training rows come from: "train", or "validated" minus dev/test clips, speakers and sentences
    "train_split": "train",
    #: caps on dev and test hours (the same rows for every seed); 0 keeps the split as released
    "dev_hours": 0.0,
    "test_hours": 0.0,
    #: clips longer than this are skipped and counted
    "max_clip_seconds": 20.0,
    #: threads decoding clips; 0: one per CPU core, at most 8
    "decode_workers": 0,
}


def _bad(key: str, text: str) -> BenchError:
    return BenchError(f"[datasets.common_voice] {key} {text}",
                      f"fix it in bench.toml or with --set datasets.common_voice.{key}=...")


def _options(raw: dict[str, Any]) -> dict[str, Any]:
    options = {**DEFAULTS, **raw}
    for key in ("train_hours", "max_clip_seconds"):
        if isinstance(options[key], bool) or not isinstance(options[key], (int, float)) or options[key] <= 0:
            raise _bad(key, f"must be a positive number, got {options[key]!r}")
    for key in ("dev_hours", "test_hours"):
        if isinstance(options[key], bool) or not isinstance(options[key], (int, float)) or options[key] < 0:
            raise _bad(key, f"must be 0 (as released) or a positive number of hours, got {options[key]!r}")
    if options["train_split"] not in ("train", "validated"):
        raise _bad("train_split", f"must be \"train\" or \"validated\", got {options['train_split']!r}")
    if isinstance(options["decode_workers"], bool) or not isinstance(options["decode_workers"], int) \
            or options["decode_workers"] < 0:
        raise _bad("decode_workers", f"must be a whole number >= 0, got {options['decode_workers']!r}")
    for key in ("release", "hf_dataset", "hf_config"):
        if not isinstance(options[key], str):
            raise _bad(key, f"must be a string, got {options[key]!r}")
    if options["release"] and options["hf_dataset"]:
        raise BenchError("[datasets.common_voice] sets both release and hf_dataset", "keep the one to use")
    return options


def _source(lang: str, options: dict[str, Any]) -> Source:
    if options["hf_dataset"]:
        return HFSource(options["hf_dataset"], options["hf_config"] or lang)
    return ReleaseSource(options["release"], lang)


# --------------------------------------------------------------------------- drawing rows
def _splits_used(options: dict[str, Any]) -> tuple[str, ...]:
    return ("train", "dev", "test") + (("validated",) if options["train_split"] == "validated" else ())


def _train_rows(source: Source, split: str) -> tuple[list[Row], list[int], Counter]:
    """Rows training may draw from, their indices in ``split``, and why the others were excluded
    (``validated``: a row whose clip, speaker or sentence is in dev or test, by the first that applies)."""
    rows = source.rows(split)
    excluded: Counter = Counter()
    if split == "train":
        return rows, list(range(len(rows))), excluded
    held_out = source.rows("dev") + source.rows("test")  # "validated" also holds dev and test
    clips = {r.clip for r in held_out}
    speakers = {r.speaker for r in held_out if r.speaker}
    sentences = {r.sentence.strip() for r in held_out}
    keep = []
    for i, r in enumerate(rows):
        if r.clip in clips:
            excluded["clip_in_dev_or_test"] += 1
        elif r.speaker in speakers:
            excluded["speaker_in_dev_or_test"] += 1
        elif r.sentence.strip() in sentences:
            excluded["sentence_in_dev_or_test"] += 1
        else:
            keep.append(i)
    return rows, keep, excluded


def _draw(source: Source, split: str, indices: Sequence[int], lang: str, target_seconds: float | None,
          max_seconds: float, workers: int, label: str) -> tuple[list[Utterance], Counter, bool]:
    """Decode rows in the order of ``indices`` until ``target_seconds`` (None: all of them).

    Returns the utterances, the skip counts and whether the rows ran out before the target.
    Decoding runs on a thread pool a chunk ahead; results are consumed in order, so the
    outcome does not depend on the number of workers.
    """
    rows = source.rows(split)
    skipped: Counter = Counter()
    kept: list[Utterance] = []
    total = 0.0

    def work(i: int) -> np.ndarray | str:
        try:
            return decode(source.audio(split, i))
        except ClipSkipped as exc:
            return exc.reason

    from tqdm import tqdm

    chunk = max(16, 4 * workers)
    bar = tqdm(total=target_seconds / 3600 if target_seconds else len(indices), desc=label, leave=False,
               unit="h" if target_seconds else "clip", disable=None, file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} {unit}" if target_seconds else None)
    seen: set[str] = set()  # clips met so far in the draw: a later row of the same clip is a duplicate
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool, bar:
        for start in range(0, len(indices), chunk):
            part = indices[start:start + chunk]
            duplicates = set()
            for i in part:
                if rows[i].clip in seen:
                    duplicates.add(i)
                seen.add(rows[i].clip)
            texts = {i: normalize(rows[i].sentence, lang) for i in part}
            futures = {i: pool.submit(work, i) for i in part if texts[i].strip() and i not in duplicates}
            for i in part:
                if i in duplicates:
                    skipped["duplicate"] += 1
                    continue
                if i not in futures:
                    skipped["empty_sentence"] += 1
                    continue
                result = futures[i].result()
                if isinstance(result, str):
                    skipped[result] += 1
                    continue
                seconds = len(result) / SAMPLING_RATE
                if seconds > max_seconds:
                    skipped["too_long"] += 1
                    continue
                kept.append(Utterance(rows[i].clip, result, rows[i].sentence, rows[i].speaker))
                total += seconds
                bar.update(seconds / 3600 if target_seconds else 1)
                if target_seconds is not None and total >= target_seconds:
                    for future in futures.values():
                        future.cancel()
                    return kept, skipped, False
            if not target_seconds:
                bar.update(len(part) - sum(1 for i in part if i in futures))
    return kept, skipped, target_seconds is not None


def _cached_draw(request: DatasetRequest, source: Source, options: dict[str, Any], which: str,
                 workers: int) -> tuple[list[Utterance], dict[str, Any]]:
    """One split's utterances (train: the seed's subset), from the cache or decoded now."""
    lang = request.language
    if which == "train":
        split = options["train_split"]
        params = {"split": split, "hours": options["train_hours"], "seed": request.seed}
    else:
        split = which
        params = {"split": split, "hours": options[f"{which}_hours"]}
    params.update(v=VERSION, lang=lang, source=source.fingerprint, max_seconds=options["max_clip_seconds"],
                  data=source.identity(_splits_used(options)))  # the tsv files' content, not only their dates
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = request.cache_dir / source.fingerprint / f"{lang}-{which}-{digest}.npz"
    cached = load_or_none(path, "common_voice")
    if cached is not None and which in cached[0]:
        return cached[0][which], cached[1]

    if which == "train":
        rows, candidates, excluded = _train_rows(source, split)
        order = np.random.default_rng([request.seed, 0xC0FFEE]).permutation(len(candidates))
        indices = [candidates[j] for j in order]
        target = options["train_hours"] * 3600
    else:
        rows = source.rows(split)
        indices = list(range(len(rows)))  # as released; a cap takes the first rows, the same for every seed
        target = options[f"{which}_hours"] * 3600 or None
    utts, skipped, exhausted = _draw(source, split, indices, lang, target, options["max_clip_seconds"], workers,
                                     f"decode {lang} {which}")
    extra = {"skipped": dict(skipped), "exhausted": exhausted, "rows": len(indices), "split_rows": len(rows)}
    if which == "train" and split == "validated":
        extra["excluded"] = dict(excluded)
    save_utterances(path, {which: utts}, extra)
    return utts, extra


def _workers(options: dict[str, Any]) -> int:
    return options["decode_workers"] or min(8, os.cpu_count() or 1)


def check(request: DatasetRequest) -> None:
    """Fail before any cell runs when the source or the language is not there."""
    if request.language not in STUDY_LANGUAGES:
        raise BenchError(f"dataset 'common_voice' has no language {request.language!r}")
    _source(request.language, _options(dict(request.options)))


def fingerprint(request: DatasetRequest) -> dict[str, Any]:
    """The identity of the data a cell of this language reads (cheap: no audio is touched).

    A release: its directory name (``cv-corpus-17.0-2024-03-15``), the language and a SHA-256 of
    the content of the tsv files used (train, dev, test; validated with ``train_split =
    "validated"``). A Hugging Face dataset: its name, configuration and each split's fingerprint.
    """
    options = _options(dict(request.options))
    return _source(request.language, options).identity(_splits_used(options))


def downloads(request: DatasetRequest) -> list[DownloadItem]:
    """What ``bench download`` does for a language: a Hugging Face dataset on the hub is loaded
    once where the hub is reachable (``datasets`` caches it under ``$HF_HOME``, where the run finds
    it with ``HF_HUB_OFFLINE=1``); an official release needs a person (terms to accept), so its
    steps are printed, unless the configured release already holds the language."""
    options = _options(dict(request.options))
    name = options["hf_dataset"]
    if name:
        if Path(name).expanduser().exists():
            return []
        config = options["hf_config"] or request.language

        def fetch() -> None:
            _load_hf(name, config)

        return [DownloadItem(kind="call", label=f"Hugging Face dataset {name} ({config})", fetch=fetch,
                             destination="the datasets cache ($HF_HOME/datasets)")]
    try:
        ReleaseSource(options["release"], request.language)
        return []
    except BenchError:
        return [DownloadItem(kind="manual", label="Common Voice (Mozilla Data Collective)", steps=MANUAL_STEPS)]


def load(request: DatasetRequest) -> DatasetSplits:
    lang = request.language
    options = _options(dict(request.options))
    source = _source(lang, options)
    workers = _workers(options)
    splits: dict[str, list[Utterance]] = {}
    info: dict[str, Any] = {"source": source.description, "train_split": options["train_split"],
                            "train_hours_requested": float(options["train_hours"]), "subset_seed": request.seed}
    skipped: dict[str, dict[str, int]] = {}
    for which in ("train", "dev", "test"):
        utts, extra = _cached_draw(request, source, options, which, workers)
        splits[which] = utts
        skipped[which] = dict(extra.get("skipped", {}))
        info[f"{which}_hours"] = sum(u.seconds for u in utts) / 3600
        info[f"{which}_utterances"] = len(utts)
        info[f"{which}_speakers"] = len({u.speaker for u in utts if u.speaker})
        info.setdefault("rows_sha256", {})[which] = rows_digest(utts)
        if extra.get("excluded"):
            info["train_excluded"] = dict(extra["excluded"])
        if which == "train" and extra.get("exhausted"):
            info["train_exhausted"] = True
            print(f"warning: common_voice {lang}: the {options['train_split']} split has only "
                  f"{info['train_hours']:.2f} h of usable audio, less than train_hours = {options['train_hours']}",
                  file=sys.stderr)
        if not utts and which == "train" and extra.get("excluded") and not extra.get("rows"):
            reasons = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(extra["excluded"].items()))
            raise BenchError(
                f"common_voice {lang}: no training rows left in validated.tsv of {source.description}: all "
                f"{extra.get('split_rows')} rows are excluded because their clip, speaker or sentence is in dev or "
                f"test ({reasons})",
                "use train_split = \"train\", or a release whose validated.tsv has speakers and sentences beyond "
                "dev and test",
            )
        if not utts:
            raise BenchError(
                f"common_voice {lang}: no usable {which} utterances in {source.description} "
                f"(skipped: {skipped[which] or 'the split is empty'})",
                "check the clips directory and the tsv files of this language",
            )
    return DatasetSplits(splits["train"], splits["dev"], splits["test"], info, skipped)


@hookimpl
def bench_register_datasets(register) -> None:
    register(
        DatasetSpec(
            name="common_voice",
            languages=tuple(STUDY_LANGUAGES),
            load=load,
            version=VERSION,
            description="Mozilla Common Voice: an unpacked release or a Hugging Face dataset; study protocol "
                        "(a seeded train subset of train_hours, dev/test as released)",
            options=tuple(DEFAULTS),
            check=check,
            fingerprint=fingerprint,
            location_options=("release", "decode_workers"),
            downloads=downloads,
        )
    )
