"""What the file-based dataset plugins share: rows, sources, and the study's drawing of splits.

A *source* (a Common Voice release, a FLEURS language folder, a Hugging Face dataset) gives,
per split, its rows (clip id, sentence, speaker) and, on demand, one row's audio: a path, the
file's bytes or samples with their rate. It never decodes up front. :func:`load_splits` then
applies the same protocol to every source: a training subset of ``train_hours`` drawn in an
order fixed by the cell's seed, dev and test as released (optionally capped), each split
decoded once and cached. Rows that cannot be used are skipped and counted by reason: a missing
clip, undecodable audio, an empty sentence (after normalisation), a clip longer than
``max_clip_seconds``, a repeated clip (``duplicate``) and a path leaving the corpus
(``path_outside_corpus``, :mod:`harness.data.paths`). A skipped training row is replaced by
the next one in the draw.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from harness.api import SAMPLING_RATE, DatasetRequest, DatasetSplits, Utterance, normalise_gender
from harness.data.utterance_cache import load_or_none, save_utterances
from harness.engine.text import normalize
from harness.errors import BenchError
from plugins.datasets import audio, rows_digest

#: options every source drawn by :func:`load_splits` understands, with their defaults
DRAW_DEFAULTS: dict[str, Any] = {
    #: hours of training audio drawn per cell (the study: 5)
    "train_hours": 5.0,
    #: caps on dev and test hours (the same rows for every seed); 0 keeps the split as released
    "dev_hours": 0.0,
    "test_hours": 0.0,
    #: clips longer than this are skipped and counted
    "max_clip_seconds": 20.0,
    #: threads decoding clips; 0: one per CPU core, at most 8
    "decode_workers": 0,
}


@dataclass(frozen=True)
class Row:
    clip: str
    sentence: str
    speaker: str
    #: the speaker's gender as :func:`harness.api.normalise_gender` gives it ("": not recorded)
    gender: str = ""


class Source(Protocol):
    #: what the results record names as the data's origin
    description: str
    #: changes whenever the underlying files change (part of every cache key)
    fingerprint: str

    def rows(self, split: str) -> list[Row]: ...

    def audio(self, split: str, index: int) -> str | bytes | tuple[np.ndarray, int]:
        """One row's audio; raises :class:`plugins.datasets.audio.ClipSkipped` for a row that
        must not be read (``path_outside_corpus``)."""

    def identity(self, splits: tuple[str, ...]) -> dict[str, Any]: ...


def gender_column(part: Any, rows: int, column: str = "gender", indices: Sequence[int] | None = None) -> list[str]:
    """A ``datasets`` split's gender column as :func:`harness.api.normalise_gender` gives it (a
    class label read by its name, e.g. FLEURS's 0/1/2 = male/female/other); ``rows`` empty strings
    when the split has no such column. ``indices``: only those rows."""
    if column not in getattr(part, "column_names", ()):
        return [""] * rows
    values = list(part[column])
    if indices is not None:
        values = [values[i] for i in indices]
    names = getattr(part.features.get(column), "names", None)
    if names:
        values = [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in values]
    return [normalise_gender(v) for v in values]


def check_draw_options(dataset: str, options: Mapping[str, Any]) -> None:
    """Refuse bad values of :data:`DRAW_DEFAULTS`' options (``options`` merged over them)."""
    def bad(key: str, text: str) -> BenchError:
        return BenchError(f"[datasets.{dataset}] {key} {text}",
                          f"fix it in bench.toml or with --set datasets.{dataset}.{key}=...")

    for key in ("train_hours", "max_clip_seconds"):
        if isinstance(options[key], bool) or not isinstance(options[key], (int, float)) or options[key] <= 0:
            raise bad(key, f"must be a positive number, got {options[key]!r}")
    for key in ("dev_hours", "test_hours"):
        if isinstance(options[key], bool) or not isinstance(options[key], (int, float)) or options[key] < 0:
            raise bad(key, f"must be 0 (as released) or a positive number of hours, got {options[key]!r}")
    if isinstance(options["decode_workers"], bool) or not isinstance(options["decode_workers"], int) \
            or options["decode_workers"] < 0:
        raise bad("decode_workers", f"must be a whole number >= 0, got {options['decode_workers']!r}")


# --------------------------------------------------------------------------- drawing rows
def splits_used(options: Mapping[str, Any]) -> tuple[str, ...]:
    return ("train", "dev", "test") + (("validated",) if options.get("train_split") == "validated" else ())


def train_rows(source: Source, split: str) -> tuple[list[Row], list[int], Counter]:
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


def draw(source: Source, split: str, indices: Sequence[int], lang: str, target_seconds: float | None,
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
            return audio.decode(source.audio(split, i))
        except audio.ClipSkipped as exc:
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
                kept.append(Utterance(rows[i].clip, result, rows[i].sentence, rows[i].speaker, rows[i].gender))
                total += seconds
                bar.update(seconds / 3600 if target_seconds else 1)
                if target_seconds is not None and total >= target_seconds:
                    for future in futures.values():
                        future.cancel()
                    return kept, skipped, False
            if not target_seconds:
                bar.update(len(part) - sum(1 for i in part if i in futures))
    return kept, skipped, target_seconds is not None


def cached_draw(request: DatasetRequest, source: Source, options: Mapping[str, Any], which: str, workers: int,
                dataset: str, version: str) -> tuple[list[Utterance], dict[str, Any]]:
    """One split's utterances (train: the seed's subset), from the cache or decoded now."""
    lang = request.language
    if which == "train":
        split = options.get("train_split", "train")
        params = {"split": split, "hours": options["train_hours"], "seed": request.seed}
    else:
        split = which
        params = {"split": split, "hours": options[f"{which}_hours"]}
    # fields: the cache holds each utterance's gender since bench kept it (older files lack it)
    params.update(v=version, lang=lang, source=source.fingerprint, max_seconds=options["max_clip_seconds"],
                  fields="id,text,speaker,gender",
                  data=source.identity(splits_used(options)))  # the manifests' content, not only their dates
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = request.cache_dir / source.fingerprint / f"{lang}-{which}-{digest}.npz"
    cached = load_or_none(path, dataset)
    if cached is not None and which in cached[0]:
        return cached[0][which], cached[1]

    if which == "train":
        rows, candidates, excluded = train_rows(source, split)
        order = np.random.default_rng([request.seed, 0xC0FFEE]).permutation(len(candidates))
        indices = [candidates[j] for j in order]
        target = options["train_hours"] * 3600
    else:
        rows = source.rows(split)
        indices = list(range(len(rows)))  # as released; a cap takes the first rows, the same for every seed
        target = options[f"{which}_hours"] * 3600 or None
    utts, skipped, exhausted = draw(source, split, indices, lang, target, options["max_clip_seconds"], workers,
                                    f"decode {lang} {which}")
    extra = {"skipped": dict(skipped), "exhausted": exhausted, "rows": len(indices), "split_rows": len(rows)}
    if which == "train" and split == "validated":
        extra["excluded"] = dict(excluded)
    save_utterances(path, {which: utts}, extra)
    return utts, extra


def workers(options: Mapping[str, Any]) -> int:
    return options["decode_workers"] or min(8, os.cpu_count() or 1)


def load_splits(request: DatasetRequest, source: Source, options: Mapping[str, Any], *, dataset: str, version: str,
                hint: str, info: Mapping[str, Any] | None = None) -> DatasetSplits:
    """The cell's train subset and dev/test splits from ``source`` (see the module's docstring).

    ``hint`` is the fix suggested when a split has no usable utterance; ``info`` adds facts to
    the record's ``data``.
    """
    lang = request.language
    train_split = options.get("train_split", "train")
    splits: dict[str, list[Utterance]] = {}
    facts: dict[str, Any] = {"source": source.description, "train_split": train_split,
                             "train_hours_requested": float(options["train_hours"]), "subset_seed": request.seed,
                             **(info or {})}
    skipped: dict[str, dict[str, int]] = {}
    for which in ("train", "dev", "test"):
        utts, extra = cached_draw(request, source, options, which, workers(options), dataset, version)
        splits[which] = utts
        skipped[which] = dict(extra.get("skipped", {}))
        facts[f"{which}_hours"] = sum(u.seconds for u in utts) / 3600
        facts[f"{which}_utterances"] = len(utts)
        facts[f"{which}_speakers"] = len({u.speaker for u in utts if u.speaker})
        genders = Counter(u.gender for u in utts if u.gender)
        if genders:  # only where the source records it: other records stay as they were
            facts[f"{which}_genders"] = dict(sorted(genders.items()))
            facts[f"{which}_gender_speakers"] = dict(sorted(Counter(
                g for g, _ in {(u.gender, u.speaker) for u in utts if u.gender and u.speaker}).items()))
        facts.setdefault("rows_sha256", {})[which] = rows_digest(utts)
        if extra.get("excluded"):
            facts["train_excluded"] = dict(extra["excluded"])
        if which == "train" and extra.get("exhausted"):
            facts["train_exhausted"] = True
            print(f"warning: {dataset} {lang}: the {train_split} split has only "
                  f"{facts['train_hours']:.2f} h of usable audio, less than train_hours = {options['train_hours']}",
                  file=sys.stderr)
        if not utts and which == "train" and extra.get("excluded") and not extra.get("rows"):
            reasons = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(extra["excluded"].items()))
            raise BenchError(
                f"{dataset} {lang}: no training rows left in validated.tsv of {source.description}: all "
                f"{extra.get('split_rows')} rows are excluded because their clip, speaker or sentence is in dev or "
                f"test ({reasons})",
                "use train_split = \"train\", or a release whose validated.tsv has speakers and sentences beyond "
                "dev and test",
            )
        if not utts:
            raise BenchError(
                f"{dataset} {lang}: no usable {which} utterances in {source.description} "
                f"(skipped: {skipped[which] or 'the split is empty'})",
                hint,
            )
    return DatasetSplits(splits["train"], splits["dev"], splits["test"], facts, skipped)
