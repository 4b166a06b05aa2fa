"""``fleurs``: Google's FLEURS (102 languages reading the same FLoRes-101 sentences) with the study's protocol.

Reads the published per-language folders (tsv files with audio archives or extracted audio)
or the Hugging Face layout saved locally (:mod:`.sources`). Language codes are FLEURS's
(``de_de``, ``es_419``, ``cmn_hans_cn``; metadata in :mod:`harness.data.fleurs_languages`);
``--langs all`` plans the languages present in the configured data. Each cell draws as
``common_voice`` does (:mod:`plugins.datasets.corpus`): a seeded ``train_hours`` subset of
train, dev and test as released, every skipped row counted by reason (a missing or
undecodable wav, an empty transcript, a clip over ``max_clip_seconds``, a repeated file, a
file name leaving the language's folder). A FLEURS split holds several readings of a sentence
by different speakers; each wav is one utterance. The transcript is FLEURS's normalised
``transcription`` by default (``transcript = "raw_transcription"`` for the original text).

FLEURS is parallel: every language reads translations of the same sentences, which the record
notes (``data["parallel_sentences"]``) and the report's data table mentions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.api import DatasetRequest, DatasetSpec, DatasetSplits
from harness.data.fleurs_languages import FLEURS_LANGUAGES
from harness.errors import BenchError
from harness.hookspecs import hookimpl
from plugins.datasets import corpus

from .sources import FolderSource, find_root, folder_languages, hf_languages, hf_source

VERSION = "1"
NAME = "fleurs"
#: what the record says about the data's parallel sentences
PARALLEL = "FLEURS: every language reads translations of the same FLoRes-101 sentences"

DEFAULTS: dict[str, Any] = {
    #: the folder holding the language folders (FLEURS's data/); else $BENCH_FLEURS
    "root": "",
    #: or the Hugging Face layout saved locally: <hf_dataset>/<code>/ (save_to_disk per language)
    "hf_dataset": "",
    #: where audio paths of the Hugging Face layout must lie; empty: the saved dataset's folder
    "audio_root": "",
    #: "transcription" (FLEURS's normalised text) or "raw_transcription"
    "transcript": "transcription",
    **corpus.DRAW_DEFAULTS,
}


def _options(raw: Mapping[str, Any]) -> dict[str, Any]:
    options = {**DEFAULTS, **raw}
    corpus.check_draw_options(NAME, options)
    for key in ("root", "hf_dataset", "audio_root", "transcript"):
        if not isinstance(options[key], str):
            raise BenchError(f"[datasets.fleurs] {key} must be a string, got {options[key]!r}",
                             f"fix it in bench.toml or with --set datasets.fleurs.{key}=...")
    if options["transcript"] not in ("transcription", "raw_transcription"):
        raise BenchError(f"[datasets.fleurs] transcript must be \"transcription\" or \"raw_transcription\", "
                         f"got {options['transcript']!r}", "fix it in bench.toml or with --set")
    if options["root"] and options["hf_dataset"]:
        raise BenchError("[datasets.fleurs] sets both root and hf_dataset", "keep the one to use")
    return options


def _source(request: DatasetRequest, options: Mapping[str, Any]):
    if request.language not in FLEURS_LANGUAGES:
        raise BenchError(f"dataset 'fleurs' has no language {request.language!r}",
                         "FLEURS codes look like de_de, es_419, cmn_hans_cn (bench list --datasets)")
    if options["hf_dataset"]:
        return hf_source(options["hf_dataset"], request.language, options["transcript"], options["audio_root"])
    return FolderSource(options["root"], request.language, request.cache_dir, options["transcript"])


def languages_of(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The FLEURS languages present in the configured data (all 102 when none is configured yet,
    so that the check names what is missing)."""
    from pathlib import Path

    options = _options(raw)
    try:
        present = hf_languages(Path(options["hf_dataset"]).expanduser()) if options["hf_dataset"] \
            else folder_languages(find_root(options["root"]))
    except BenchError:
        return tuple(FLEURS_LANGUAGES)
    known = [code for code in present if code in FLEURS_LANGUAGES]
    return tuple(known) or tuple(FLEURS_LANGUAGES)


def check(request: DatasetRequest) -> None:
    _source(request, _options(request.options))


def fingerprint(request: DatasetRequest) -> dict[str, Any]:
    """The language, the transcript used and a SHA-256 of each tsv's content (folders), or the
    saved dataset's own fingerprints (Hugging Face layout)."""
    options = _options(request.options)
    return _source(request, options).identity(("train", "dev", "test"))


def load(request: DatasetRequest) -> DatasetSplits:
    options = _options(request.options)
    source = _source(request, options)
    return corpus.load_splits(request, source, options, dataset=NAME, version=VERSION,
                              hint="check the language's tsv files and audio (audio/<split>/ or audio/<split>.tar.gz)",
                              info={"parallel_sentences": PARALLEL})


@hookimpl
def bench_register_datasets(register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            languages=tuple(FLEURS_LANGUAGES),
            load=load,
            version=VERSION,
            description="Google FLEURS, 102 languages of parallel read sentences: the published folders or the "
                        "Hugging Face layout saved locally; study protocol",
            options=tuple(DEFAULTS),
            check=check,
            fingerprint=fingerprint,
            location_options=("root", "hf_dataset", "audio_root", "decode_workers"),
            list_languages=languages_of,
        )
    )
