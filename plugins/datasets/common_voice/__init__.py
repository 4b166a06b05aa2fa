"""Common Voice with the study's data protocol.

Reads an unpacked official release (``cv-corpus-<version>/<lang>/*.tsv`` and ``clips/*.mp3``)
(including the releases Mozilla Data Collective distributes since Common Voice left the Hugging
Face Hub in 2025) or a Hugging Face dataset in the Common Voice schema saved locally. Per cell it draws a training subset of
``train_hours`` from the train split, in an order fixed by the cell's seed, and takes dev and
test as released (optionally capped, the same for every seed). Only the clips used are
decoded (libsndfile reads MP3; soxr resamples to 16 kHz), once: the decoded audio is cached.

Rows that cannot be used are skipped and counted, by reason, in the cell's record: a missing
clip, undecodable audio, an empty sentence (after normalisation), a clip longer than
``max_clip_seconds``, a row repeating a clip already met in the split (``duplicate``) or a row
whose ``path`` is absolute or leaves the release (``path_outside_corpus``: never opened). A
skipped training row is replaced by the next one in the draw. The drawing is shared with the
other dataset plugins (:mod:`plugins.datasets.corpus`).

The data's identity (:func:`fingerprint`: the release's name, the language and a SHA-256 of the
content of the tsv files used, or a Hugging Face dataset's fingerprints) is part of every cell's
key, and each cell's record holds a digest of the rows it used (``data["rows_sha256"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api import DatasetRequest, DatasetSpec, DatasetSplits, DownloadItem
from harness.errors import BenchError
from harness.hookspecs import hookimpl
from harness.languages import STUDY_LANGUAGES
from plugins.datasets import corpus

from .sources import MANUAL_STEPS, HFSource, ReleaseSource, Row, Source, load_hf

__all__ = ["DEFAULTS", "HFSource", "ReleaseSource", "Row", "Source", "VERSION", "check", "fingerprint", "load"]

#: 2: duplicate rows (the same clip twice in a split) are dropped and counted
VERSION = "2"

DEFAULTS: dict[str, Any] = {
    #: unpacked release directory (cv-corpus-<version>); else $BENCH_COMMON_VOICE
    "release": "",
    #: or a Hugging Face dataset: a local directory (save_to_disk or data files), or a hub id
    "hf_dataset": "",
    #: its configuration name; empty: the language code
    "hf_config": "",
    #: where training rows come from: "train", or "validated" minus dev/test clips, speakers and sentences
    "train_split": "train",
    **corpus.DRAW_DEFAULTS,
}


def _options(raw: dict[str, Any]) -> dict[str, Any]:
    options = {**DEFAULTS, **raw}
    corpus.check_draw_options("common_voice", options)
    if options["train_split"] not in ("train", "validated"):
        raise BenchError(f"[datasets.common_voice] train_split must be \"train\" or \"validated\", "
                         f"got {options['train_split']!r}",
                         "fix it in bench.toml or with --set datasets.common_voice.train_split=...")
    for key in ("release", "hf_dataset", "hf_config"):
        if not isinstance(options[key], str):
            raise BenchError(f"[datasets.common_voice] {key} must be a string, got {options[key]!r}",
                             f"fix it in bench.toml or with --set datasets.common_voice.{key}=...")
    if options["release"] and options["hf_dataset"]:
        raise BenchError("[datasets.common_voice] sets both release and hf_dataset", "keep the one to use")
    return options


def _source(lang: str, options: dict[str, Any]) -> Source:
    if options["hf_dataset"]:
        return HFSource(options["hf_dataset"], options["hf_config"] or lang)
    return ReleaseSource(options["release"], lang)


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
    return _source(request.language, options).identity(corpus.splits_used(options))


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
            load_hf(name, config)

        return [DownloadItem(kind="call", label=f"Hugging Face dataset {name} ({config})", fetch=fetch,
                             destination="the datasets cache ($HF_HOME/datasets)")]
    try:
        ReleaseSource(options["release"], request.language)
        return []
    except BenchError:
        return [DownloadItem(kind="manual", label="Common Voice (Mozilla Data Collective)", steps=MANUAL_STEPS)]


def load(request: DatasetRequest) -> DatasetSplits:
    options = _options(dict(request.options))
    source = _source(request.language, options)
    return corpus.load_splits(request, source, options, dataset="common_voice", version=VERSION,
                              hint="check the clips directory and the tsv files of this language")


@hookimpl
def bench_register_datasets(register) -> None:
    register(
        DatasetSpec(
            name="common_voice",
            languages=tuple(STUDY_LANGUAGES),
            load=load,
            version=VERSION,
            description="Mozilla Common Voice: an unpacked release (Mozilla Data Collective) or a Hugging Face "
                        "dataset saved locally; study protocol (a seeded train subset of train_hours, dev/test "
                        "as released)",
            options=tuple(DEFAULTS),
            check=check,
            fingerprint=fingerprint,
            location_options=("release", "decode_workers"),
            downloads=downloads,
        )
    )
