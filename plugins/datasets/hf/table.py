"""A Hugging Face ``datasets`` dataset available locally, read as a bench source.

:func:`open_local` loads what lies in a directory: a ``save_to_disk`` copy
(``load_from_disk``), data files (parquet, csv, json, arrow: ``load_dataset(dir)``) or an
``audiofolder`` (audio files with a ``metadata.csv``; read as its metadata tables, so that
``datasets`` need not encode audio, which would need torchcodec). :class:`TableSource` gives the rows of
bench's train/dev/test splits from named columns, optionally only those of one language (a
language column), and each row's audio without letting ``datasets`` decode it: the audio column
is cast to ``Audio(decode=False)`` and its bytes or path are decoded by bench (libsndfile +
soxr), so neither torchcodec nor ffmpeg is needed. A path in the data must lie inside
``root`` (the dataset's directory, or ``audio_root``); others are skipped as
``path_outside_corpus`` and never opened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.paths import PATH_OUTSIDE_CORPUS, inside
from harness.errors import BenchError
from plugins.datasets.audio import ClipSkipped
from plugins.datasets.corpus import Row, gender_column

#: bench's split -> the names it goes by in datasets, tried in order
SPLIT_NAMES: dict[str, tuple[str, ...]] = {"train": ("train",), "dev": ("validation", "dev", "valid"),
                                           "test": ("test",)}
TEXT_COLUMNS = ("text", "sentence", "transcription", "transcript", "normalized_text", "raw_text")
SPEAKER_COLUMNS = ("speaker_id", "client_id", "speaker")
ID_COLUMNS = ("id", "audio_id", "path", "file", "file_name")
BUILDERS = ("", "load_from_disk", "audiofolder", "parquet", "csv", "json", "arrow")


def audiofolder_metadata(path: Path) -> dict[str, Path]:
    """The metadata files of an audiofolder: ``<path>/<split>/metadata.{csv,jsonl}`` per split, or
    ``<path>/metadata.{csv,jsonl}`` (one split, train); empty when ``path`` is not one."""
    found = {}
    for folder in sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []:
        for name in ("metadata.csv", "metadata.jsonl"):
            if (folder / name).is_file():
                found[folder.name] = folder / name
                break
    if not found:
        for name in ("metadata.csv", "metadata.jsonl"):
            if (path / name).is_file():
                return {"train": path / name}
    return found


def open_audiofolder(path: Path) -> tuple[Any, dict[str, Path]]:
    """An audiofolder read without ``datasets``' audio encoding (which needs torchcodec): its
    metadata tables, whose ``file_name`` column names each clip relative to the table's folder.
    Returns the ``DatasetDict`` and, per split, that folder."""
    import datasets

    files = audiofolder_metadata(path)
    if not files:
        raise BenchError(f"{path} is not an audiofolder: no metadata.csv or metadata.jsonl in it or its split folders",
                         "add a metadata.csv with a file_name column and the transcripts")
    kinds = {f.suffix for f in files.values()}
    builder = "csv" if kinds == {".csv"} else "json"
    loaded = datasets.load_dataset(builder, data_files={split: str(f) for split, f in files.items()})
    return loaded, {split: f.parent for split, f in files.items()}


def open_local(path: Path, builder: str = "", config: str = "", what: str = "hf") -> Any:
    """A ``DatasetDict`` (or ``Dataset``) from a local directory, and for an audiofolder the folder
    of each split (else an empty mapping); BenchError when it cannot be read."""
    import datasets

    if not path.exists():
        raise BenchError(f"{what}: the dataset directory {path} does not exist",
                         "point path at a local dataset: a save_to_disk directory, a folder of parquet/csv/json "
                         "files or an audiofolder (bench reads no hub)")
    try:
        saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        if builder == "load_from_disk" or (not builder and saved):
            return datasets.load_from_disk(str(path)), {}
        if builder == "audiofolder" or (not builder and audiofolder_metadata(path)):
            return open_audiofolder(path)
        if builder:
            return datasets.load_dataset(builder, config or None, data_dir=str(path)), {}
        return datasets.load_dataset(str(path), config or None), {}
    except BenchError:
        raise
    except Exception as exc:  # damaged files, an unknown builder, files of no known format
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if exc.__cause__ is not None and str(exc.__cause__).strip():  # datasets wraps the reason
            first += ": " + str(exc.__cause__).strip().splitlines()[0]
        raise BenchError(f"{what}: could not load the dataset in {path}: {first}",
                         "check the directory (save_to_disk output, parquet/csv/json files, or audio files with a "
                         "metadata.csv for audiofolder) and the builder option") from None


def _pick(columns: Sequence[str], wanted: str, candidates: Sequence[str], role: str, what: str,
          required: bool = True) -> str:
    if wanted:
        if wanted not in columns:
            raise BenchError(f"{what}: the dataset has no {role} column {wanted!r} (columns: {', '.join(columns)})",
                             f"set {role}_column to one of its columns")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    if required:
        raise BenchError(f"{what}: cannot tell which column holds the {role} (columns: {', '.join(columns)})",
                         f"set {role}_column to one of them")
    return ""


class TableSource:
    """Rows and audio of a loaded dataset's splits (see the module's docstring)."""

    def __init__(self, loaded: Any, *, what: str, description: str, root: Path, identity: Mapping[str, Any],
                 splits: Mapping[str, str] | None = None, audio_column: str = "audio", text_column: str = "",
                 speaker_column: str = "", id_column: str = "", sampling_rate: int = 0,
                 language: tuple[str, Any] | None = None, basename_ids: bool = False,
                 bases: Mapping[str, Path] | None = None) -> None:
        import datasets

        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({"train": loaded})
        self.what, self.description, self.root = what, description, root.resolve()
        self.sampling_rate = sampling_rate
        self.basename_ids = basename_ids
        self.parts: dict[str, Any] = {}
        #: per bench split, the folder relative paths start from (an audiofolder's split folder)
        self.bases: dict[str, Path] = {}
        for split in ("train", "dev", "test"):
            names = (splits[split],) if splits and splits.get(split) else SPLIT_NAMES[split]
            found = next((n for n in names if n in loaded), None)
            if found is not None and bases and found in bases:
                self.bases[split] = bases[found]
            if found is None:
                raise BenchError(f"{what}: the dataset has no {split} split (looked for {', '.join(names)}; it has "
                                 f"{', '.join(loaded) or 'none'})",
                                 f"name it with splits = {{{split} = \"<split name>\"}}")
            self.parts[split] = loaded[found]
        columns = list(self.parts["train"].column_names)
        self.audio_column = _pick(columns, audio_column if audio_column != "audio" or bases is None else "",
                                  ("audio", "file_name"), "audio", what)
        self.text_column = _pick(columns, text_column, TEXT_COLUMNS, "text", what)
        self.speaker_column = _pick(columns, speaker_column, SPEAKER_COLUMNS, "speaker", what, required=False)
        self.id_column = _pick(columns, id_column, ID_COLUMNS, "id", what, required=False)
        for split, part in self.parts.items():
            missing = {c for c in (self.audio_column, self.text_column) if c not in part.column_names}
            if missing:
                raise BenchError(f"{what}: split {split} lacks the column(s) {', '.join(sorted(missing))}",
                                 "every split needs the audio and text columns")
            if isinstance(part.features[self.audio_column], datasets.Audio):
                self.parts[split] = part.cast_column(self.audio_column, datasets.Audio(decode=False))
        # a language column: only its rows (indices into the split, computed once; nothing is written)
        self.indices: dict[str, list[int]] = {}
        for split, part in self.parts.items():
            if language is None:
                self.indices[split] = list(range(len(part)))
            else:
                column, value = language
                if column not in part.column_names:
                    raise BenchError(f"{what}: the dataset has no language column {column!r}",
                                     f"set language_column to one of: {', '.join(part.column_names)}")
                self.indices[split] = [i for i, v in enumerate(part[column]) if str(v) == str(value)]
        self._identity = {**identity, "splits": {
            s: {"fingerprint": getattr(p, "_fingerprint", ""), "rows": len(self.indices[s])}
            for s, p in self.parts.items()}}
        self.fingerprint = hashlib.sha256(repr(sorted(self._identity.items())).encode()).hexdigest()[:16]
        self._rows: dict[str, list[Row]] = {}

    def identity(self, splits: tuple[str, ...]) -> dict[str, Any]:
        return self._identity

    def _column(self, split: str, name: str) -> list[Any]:
        values = self.parts[split][name]
        return [values[i] for i in self.indices[split]]

    def rows(self, split: str) -> list[Row]:
        if split not in self._rows:
            texts = self._column(split, self.text_column)
            speakers = self._column(split, self.speaker_column) if self.speaker_column else [""] * len(texts)
            if self.id_column:
                ids = [str(v) for v in self._column(split, self.id_column)]
                if self.basename_ids:
                    ids = [v.replace("\\", "/").rsplit("/", 1)[-1] for v in ids]
            else:
                ids = [f"{split}-{i}" for i in self.indices[split]]
            genders = gender_column(self.parts[split], len(texts), indices=self.indices[split])
            self._rows[split] = [Row(c or f"{split}-{i}", str(t or ""), str(sp or ""), g)
                                 for i, (c, t, sp, g) in enumerate(zip(ids, texts, speakers, genders))]
        return self._rows[split]

    def audio(self, split: str, index: int) -> str | bytes | tuple[np.ndarray, int]:
        item = self.parts[split][self.indices[split][index]][self.audio_column]
        if isinstance(item, dict):
            if item.get("bytes"):
                return item["bytes"]
            if item.get("array") is not None:  # already decoded samples
                return np.asarray(item["array"]), int(item.get("sampling_rate") or self.sampling_rate)
            item = item.get("path") or ""
        if isinstance(item, bytes):
            return item
        if isinstance(item, (list, np.ndarray)):
            if not self.sampling_rate:
                raise BenchError(f"{self.what}: the audio column holds samples without their rate",
                                 "set sampling_rate to the rate of the samples")
            return np.asarray(item), self.sampling_rate
        if not item:
            return b""
        path = inside(self.root, str(item), base=self.bases.get(split), absolute_ok=True)
        if path is None:
            raise ClipSkipped(PATH_OUTSIDE_CORPUS)
        return str(path)
