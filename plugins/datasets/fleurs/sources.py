"""Where FLEURS comes from: the per-language folders as published, or its Hugging Face layout saved locally.

The published layout (the ``data/`` folder of ``google/fleurs``; ``root`` may be that folder
or the one holding it)::

    <root>/<code>/train.tsv dev.tsv test.tsv
    <root>/<code>/audio/train.tar.gz dev.tar.gz test.tar.gz   (archives, as downloaded)
    <root>/<code>/audio/train/*.wav ...                       (or extracted)

Each tsv line, without a header: ``id`` (the FLoRes sentence it reads, shared across languages),
the wav's file name, the raw transcription, the normalised transcription, its characters,
the number of samples and the speaker's gender. An archive is extracted once into bench's
cache (only plain files, by their base name: a member that is a link or has ``..`` is left
out); an extracted folder is read in place. File names must stay inside the language's
folder (``path_outside_corpus``).

The Hugging Face layout: a ``DatasetDict`` saved with ``save_to_disk`` per language
(``<hf_dataset>/<code>/``, or ``<hf_dataset>`` itself for one language), with the columns
``id, num_samples, path, audio, transcription, raw_transcription, gender, lang_id``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tarfile
import threading
from pathlib import Path
from typing import Any

from harness.data.paths import PATH_OUTSIDE_CORPUS, inside
from harness.api import normalise_gender
from harness.errors import BenchError
from plugins.datasets.audio import ClipSkipped
from plugins.datasets.common_voice.sources import file_sha256
from plugins.datasets.corpus import Row
from plugins.datasets.hf.table import TableSource, open_local

ENV_ROOT = "BENCH_FLEURS"
SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
FETCH_HINT = ("download the languages' folders from https://huggingface.co/datasets/google/fleurs (data/<code>/: "
              "the three tsv files and audio/*.tar.gz), then set root = \"/path/to/fleurs/data\" under "
              f"[datasets.fleurs] in bench.toml (or {ENV_ROOT}=/path/to/fleurs/data)")


def find_root(configured: str) -> Path:
    raw = configured or os.environ.get(ENV_ROOT, "")
    if not raw:
        raise BenchError("dataset 'fleurs' has no data source configured",
                         FETCH_HINT + "; or hf_dataset = \"<directory saved with save_to_disk>\"")
    root = Path(raw).expanduser()
    if not root.is_dir():
        raise BenchError(f"FLEURS directory {root} does not exist", FETCH_HINT)
    if not folder_languages(root) and (root / "data").is_dir():
        root = root / "data"  # the dataset repository's top: its languages lie in data/
    return root


def folder_languages(root: Path) -> list[str]:
    """Language folders under ``root`` holding a train.tsv."""
    return sorted(p.name for p in root.iterdir() if (p / "train.tsv").is_file()) if root.is_dir() else []


class FolderSource:
    """One language of the published layout (see the module's docstring)."""

    def __init__(self, configured: str, lang: str, cache_dir: Path, transcript: str) -> None:
        self.root = find_root(configured)
        self.dir = self.root / lang
        if not (self.dir / "train.tsv").is_file():
            present = folder_languages(self.root)
            raise BenchError(f"the FLEURS folder {self.root} has no language {lang!r} (no {self.dir / 'train.tsv'})",
                             (f"languages in it: {', '.join(present)}; " if present else "it holds no language "
                              "folder; ") + "choose --langs among them, or " + FETCH_HINT)
        for split, name in SPLIT_FILES.items():
            if not (self.dir / name).is_file():
                raise BenchError(f"{self.dir} has no {name}", "the language folder is incomplete; download it again")
            if not (self.dir / "audio" / split).is_dir() and not self._archive(split).is_file():
                raise BenchError(f"{self.dir} has no audio for {split} (neither audio/{split}/ nor "
                                 f"audio/{split}.tar.gz)", "download the language's audio archives again")
        self.lang, self.cache_dir, self.transcript = lang, cache_dir, transcript
        self.description = f"FLEURS {lang} ({self.dir})"
        digest = hashlib.sha256(str(self.dir.resolve()).encode() + transcript.encode())
        for name in SPLIT_FILES.values():
            stat = (self.dir / name).stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        self.fingerprint = digest.hexdigest()[:16]
        self._rows: dict[str, list[Row]] = {}
        self._ids: dict[str, list[str]] = {}
        self._audio_dirs: dict[str, tuple[Path, Path]] = {}
        self._lock = threading.Lock()

    def _archive(self, split: str) -> Path:
        return self.dir / "audio" / f"{split}.tar.gz"

    def identity(self, splits: tuple[str, ...]) -> dict[str, Any]:
        """The language, the transcript column used, a SHA-256 of each tsv's content and the audio's
        form (a folder, or the archive's size)."""
        audio = {}
        for split in splits:
            archive = self._archive(split)
            audio[split] = "folder" if (self.dir / "audio" / split).is_dir() else f"archive:{archive.stat().st_size}"
        return {"fleurs": self.lang, "transcript": self.transcript, "audio": audio,
                "tsv_sha256": {SPLIT_FILES[s]: file_sha256(self.dir / SPLIT_FILES[s]) for s in splits}}

    def rows(self, split: str) -> list[Row]:
        if split not in self._rows:
            column = 3 if self.transcript == "transcription" else 2
            rows, ids = [], []
            with (self.dir / SPLIT_FILES[split]).open(encoding="utf-8", newline="") as handle:
                for fields in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                    if not fields:
                        continue
                    # a short line has no transcript: counted as an empty sentence
                    name = fields[1] if len(fields) > 1 else ""
                    text = fields[column] if len(fields) > column else ""
                    gender = normalise_gender(fields[6]) if len(fields) > 6 else ""
                    rows.append(Row(name or f"{split}-line-{len(rows)}", text, "", gender))
                    ids.append(fields[0])
            self._rows[split], self._ids[split] = rows, ids
        return self._rows[split]

    def sentence_ids(self, split: str) -> list[str]:
        self.rows(split)
        return self._ids[split]

    def _audio_dir(self, split: str) -> tuple[Path, Path]:
        """(the corpus folder paths must stay in, the folder file names are relative to)."""
        with self._lock:
            if split not in self._audio_dirs:
                folder = self.dir / "audio" / split
                if folder.is_dir():
                    self._audio_dirs[split] = (self.dir, folder)
                else:
                    extracted = extract(self._archive(split), self.cache_dir / "fleurs-audio")
                    self._audio_dirs[split] = (extracted, extracted)
            return self._audio_dirs[split]

    def audio(self, split: str, index: int) -> str:
        corpus_dir, base = self._audio_dir(split)
        path = inside(corpus_dir, self.rows(split)[index].clip, base=base)
        if path is None:
            raise ClipSkipped(PATH_OUTSIDE_CORPUS)
        return str(path)


def extract(archive: Path, into: Path) -> Path:
    """Extract ``archive``'s plain files (by base name) once into a folder of ``into`` named by the
    archive's name, size and date; returns that folder. Links, devices and names with ``..`` are
    left out, so nothing is written outside it. Atomic: a killed extraction leaves no folder."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = into / f"{archive.name.split('.')[0]}-{key}"
    if target.is_dir():
        return target
    into.mkdir(parents=True, exist_ok=True)
    tmp = into / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                parts = member.name.replace("\\", "/").split("/")
                if not member.isfile() or ".." in parts or member.name.startswith("/") or not parts[-1]:
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source, (tmp / parts[-1]).open("wb") as out:
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchError(f"could not read the FLEURS archive {archive}: {exc}",
                         "download it again (it may be truncated)") from None
    try:
        tmp.rename(target)
    except OSError:  # another process extracted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- Hugging Face layout
def hf_languages(directory: Path) -> list[str]:
    """Language folders of a saved FLEURS (``<dir>/<code>/dataset_dict.json``)."""
    return sorted(p.name for p in directory.iterdir() if (p / "dataset_dict.json").is_file()) \
        if directory.is_dir() else []


def hf_source(configured: str, lang: str, transcript: str, audio_root: str) -> TableSource:
    directory = Path(configured).expanduser()
    target = directory / lang if (directory / lang).is_dir() else directory
    if target == directory and hf_languages(directory):
        raise BenchError(f"the saved FLEURS {directory} has no language {lang!r}",
                         f"languages in it: {', '.join(hf_languages(directory))}; choose --langs among them")
    loaded, bases = open_local(target, "", "", what=f"fleurs ({target})")
    return TableSource(
        loaded, what=f"fleurs ({target})", description=f"FLEURS {lang} (Hugging Face layout, {target})",
        root=Path(audio_root).expanduser() if audio_root else target,
        identity={"fleurs": lang, "transcript": transcript, "hf_dataset": target.name},
        audio_column="audio", text_column=transcript, id_column="path", basename_ids=True, bases=bases)
