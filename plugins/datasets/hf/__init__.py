"""``hf``: any Hugging Face ``datasets`` dataset available locally, with the study's data protocol.

The dataset lies in a directory (``path``): a ``save_to_disk`` copy, a folder of parquet,
csv, json or arrow files, or an ``audiofolder``; ``{lang}`` in ``path`` or ``config`` stands
for the language's value, so a corpus with one directory or configuration per language
(Multilingual LibriSpeech, VoxPopuli) is one bench dataset. Options name the audio, text,
speaker and id columns (found by their usual names when not set), the split names, a language
column and the sampling rate of raw sample arrays. Languages are bench codes given by
``languages`` (a list, or a table from bench code to the value in the data) or, with a
``language_column``, the values found in it.

Each cell draws as ``common_voice`` does (:mod:`plugins.datasets.corpus`): a seeded
``train_hours`` subset, dev and test as released, every skipped row counted by reason,
audio paths kept inside the dataset's directory (or ``audio_root``). The data's identity is
the dataset's own fingerprint per split (``datasets``' ``_fingerprint``) with the rows kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.api import DatasetRequest, DatasetSpec, DatasetSplits
from harness.errors import BenchError
from harness.hookspecs import hookimpl
from plugins.datasets import corpus

from .table import BUILDERS, TableSource, open_local

VERSION = "1"
NAME = "hf"

DEFAULTS: dict[str, Any] = {
    #: the dataset's directory; "{lang}" stands for the language's value (see languages)
    "path": "",
    #: "" (found from the files), "load_from_disk", "audiofolder", "parquet", "csv", "json" or "arrow"
    "builder": "",
    #: a configuration name passed to load_dataset; may hold "{lang}"
    "config": "",
    #: bench split -> the dataset's split name (defaults: train; validation or dev; test)
    "splits": {},
    "audio_column": "audio",
    #: found among text, sentence, transcription, transcript, normalized_text, raw_text when empty
    "text_column": "",
    "speaker_column": "",
    "id_column": "",
    #: a column naming each row's language: a cell keeps the rows of its language
    "language_column": "",
    #: the bench language codes: a list, or a table {code = "value in path/config/language column"}
    "languages": [],
    #: the rate of audio given as raw sample arrays (audio files and bytes carry their own)
    "sampling_rate": 0,
    #: where audio paths in the data must lie; empty: the dataset's directory
    "audio_root": "",
    **corpus.DRAW_DEFAULTS,
}


def _bad(key: str, text: str) -> BenchError:
    return BenchError(f"[datasets.hf] {key} {text}", f"fix it in bench.toml or with --set datasets.hf.{key}=...")


def _options(raw: Mapping[str, Any]) -> dict[str, Any]:
    options = {**DEFAULTS, **raw}
    corpus.check_draw_options(NAME, options)
    for key in ("path", "builder", "config", "audio_column", "text_column", "speaker_column", "id_column",
                "language_column", "audio_root"):
        if not isinstance(options[key], str):
            raise _bad(key, f"must be a string, got {options[key]!r}")
    if not options["path"]:
        raise BenchError("dataset 'hf' has no path configured",
                         "set path = \"/path/to/dataset\" under [datasets.hf] in bench.toml (a save_to_disk "
                         "directory, a folder of parquet/csv/json files or an audiofolder)")
    if options["builder"] not in BUILDERS:
        raise _bad("builder", f"must be one of {', '.join(repr(b) for b in BUILDERS)}, got {options['builder']!r}")
    if not isinstance(options["splits"], Mapping) or not set(options["splits"]) <= {"train", "dev", "test"}:
        raise _bad("splits", f"must be a table with keys among train, dev, test, got {options['splits']!r}")
    languages = options["languages"]
    if isinstance(languages, Mapping):
        options["languages"] = {str(k): str(v) for k, v in languages.items()}
    elif isinstance(languages, (list, tuple)) and all(isinstance(v, str) for v in languages):
        options["languages"] = {v: v for v in languages}
    else:
        raise _bad("languages", f"must be a list of codes or a table {{code = \"value\"}}, got {languages!r}")
    if isinstance(options["sampling_rate"], bool) or not isinstance(options["sampling_rate"], int) \
            or options["sampling_rate"] < 0:
        raise _bad("sampling_rate", f"must be a whole number of Hz (0: not needed), got {options['sampling_rate']!r}")
    return options


def _with_lang(text: str, value: str) -> str:
    return text.replace("{lang}", value)


def _value(options: Mapping[str, Any], lang: str) -> str:
    return options["languages"].get(lang, lang)


def languages_of(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The configured languages: ``languages``, else the values of ``language_column``."""
    options = _options(raw)
    if options["languages"]:
        return tuple(options["languages"])
    if options["language_column"] and "{lang}" not in options["path"] + options["config"]:
        source = _source("", options, whole=True)
        values = set()
        for split in ("train", "dev", "test"):
            values.update(str(v) for v in source.parts[split][options["language_column"]])
        return tuple(sorted(values))
    raise BenchError("dataset 'hf' does not know its languages",
                     "set languages = [\"<code>\", ...] (or a table {code = \"value in the data\"}) under "
                     "[datasets.hf], or language_column to the column naming each row's language")


def _source(lang: str, options: Mapping[str, Any], whole: bool = False) -> TableSource:
    value = _value(options, lang)
    path = Path(_with_lang(options["path"], value)).expanduser()
    config = _with_lang(options["config"], value)
    loaded, bases = open_local(path, options["builder"], config, what=f"hf ({path})")
    root = Path(options["audio_root"]).expanduser() if options["audio_root"] else path
    language = None if whole or not options["language_column"] else (options["language_column"], value)
    return TableSource(
        loaded, what=f"hf ({path})", description=f"Hugging Face dataset {path}" + (f" ({config})" if config else "")
        + (f", {options['language_column']} = {value}" if language else ""),
        root=root, identity={"hf_dataset": path.name, "config": config, "language": value if language else ""},
        splits=options["splits"], audio_column=options["audio_column"], text_column=options["text_column"],
        speaker_column=options["speaker_column"], id_column=options["id_column"],
        sampling_rate=options["sampling_rate"], language=language, bases=bases)


def check(request: DatasetRequest) -> None:
    _source(request.language, _options(request.options))


def fingerprint(request: DatasetRequest) -> dict[str, Any]:
    """The dataset's directory name, configuration, language value and, per split, ``datasets``'
    own fingerprint and the number of rows kept."""
    options = _options(request.options)
    return _source(request.language, options).identity(("train", "dev", "test"))


def load(request: DatasetRequest) -> DatasetSplits:
    options = _options(request.options)
    source = _source(request.language, options)
    return corpus.load_splits(request, source, options, dataset=NAME, version=VERSION,
                              hint="check the dataset's audio and text columns (audio_column, text_column) and "
                                   "audio_root when its audio files lie elsewhere")


@hookimpl
def bench_register_datasets(register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            languages=(),
            load=load,
            version=VERSION,
            description="any Hugging Face datasets dataset available locally (save_to_disk, parquet/csv/json "
                        "files, audiofolder): Multilingual LibriSpeech, VoxPopuli, your own corpus; study protocol",
            options=tuple(DEFAULTS),
            check=check,
            fingerprint=fingerprint,
            location_options=("path", "audio_root", "decode_workers"),
            list_languages=languages_of,
        )
    )
