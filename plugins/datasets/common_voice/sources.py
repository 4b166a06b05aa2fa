"""Where Common Voice comes from: an unpacked official release, or a Hugging Face dataset.

Both give, per split, the rows (clip id, sentence, speaker) and, on demand, one row's audio
(a path or the file's bytes). Neither decodes audio up front: only the rows a cell uses are
decoded (and then cached by the plugin).

Releases. Since 2025 Mozilla distributes Common Voice through the Mozilla Data Collective
(https://datacollective.mozillafoundation.org), one archive per language and release, as
before on commonvoice.mozilla.org. Unpacked, every archive gives the same layout::

    cv-corpus-<version>-<date>/<locale>/
        train.tsv dev.tsv test.tsv validated.tsv invalidated.tsv other.tsv ...
        clips/common_voice_<locale>_<number>.mp3

``release`` names the ``cv-corpus-*`` directory (or the directory holding exactly one).
Several languages of one release unpack into the same ``cv-corpus-*`` directory.

The Hugging Face Hub no longer holds Common Voice (the ``mozilla-foundation/common_voice_*``
datasets were taken down in 2025): a hub id of that name is refused with a message; a dataset
saved locally (``save_to_disk``, or data files) in the Common Voice schema still works.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Any

from harness.data.paths import PATH_OUTSIDE_CORPUS, inside
from harness.api import normalise_gender
from harness.errors import BenchError, MissingInput
from plugins.datasets.audio import ClipSkipped
from plugins.datasets.corpus import Row, Source, gender_column

__all__ = ["ENV_RELEASE", "HFSource", "MANUAL_STEPS", "ReleaseSource", "Row", "Source", "file_sha256",
           "find_release", "load_hf"]

#: the environment variable naming an unpacked release when bench.toml does not
ENV_RELEASE = "BENCH_COMMON_VOICE"
#: the release's file for each of bench's splits
RELEASE_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv", "validated": "validated.tsv"}

#: where Common Voice releases are published since they left the Hugging Face hub (2025)
DATA_COLLECTIVE = "https://datacollective.mozillafoundation.org"

FETCH_HINT = (f"download the language from Mozilla Data Collective ({DATA_COLLECTIVE}; `bench download --datasets "
              "common_voice --langs ...` prints the steps) and unpack it, then set "
              "release = \"/path/to/cv-corpus-<version>\" under [datasets.common_voice] in bench.toml "
              f"(or {ENV_RELEASE}=/path/to/cv-corpus-<version>)")

#: the manual steps of ``bench download`` for a release (terms must be accepted by a person)
MANUAL_STEPS = (
    f"Open {DATA_COLLECTIVE}, sign in and find the Common Voice Scripted Speech dataset of each language "
    "listed above (bench's codes are Common Voice's: sv-SE, zh-CN, ...).",
    "Accept the dataset's terms (a program cannot do this for you), then download the archive of each language "
    "(the study used release 7.0; any release works, and the release's name is recorded with every result).",
    "Extract every archive into one directory on a disk the compute nodes see, e.g. `tar -xzf "
    "cv-corpus-<version>-<lang>.tar.gz -C /shared/data`: it makes /shared/data/cv-corpus-<version>/<lang>/ with "
    "train.tsv, dev.tsv, test.tsv and clips/.",
    "Tell bench where it is: release = \"/shared/data/cv-corpus-<version>\" under [datasets.common_voice] in "
    f"bench.toml, or --set datasets.common_voice.release=..., or {ENV_RELEASE}=/shared/data/cv-corpus-<version>.",
    "Check with `bench run --datasets common_voice --langs ... --dry-run` (it reads each language's tables).",
)

#: hub ids of the Common Voice datasets Mozilla took off the Hugging Face Hub
GONE_FROM_HUB = "mozilla-foundation/common_voice"


# --------------------------------------------------------------------------- official release
def find_release(configured: str) -> Path:
    """The release directory from bench.toml or the environment, checked to exist."""
    raw = configured or os.environ.get(ENV_RELEASE, "")
    if not raw:
        raise MissingInput("common_voice", "dataset 'common_voice' has no data source configured", FETCH_HINT +
                           "; or hf_dataset = \"<hub id or saved dataset directory>\"")
    root = Path(raw).expanduser()
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise BenchError(f"{root} is a Common Voice archive, not an unpacked release",
                         f"unpack it (tar -xzf {root.name}) and set release to the cv-corpus-<version> directory "
                         "it makes")
    if not root.is_dir():
        raise BenchError(f"Common Voice release directory {root} does not exist", FETCH_HINT)
    return root


def _languages_in(release: Path) -> list[str]:
    """Language directories of a release that hold a train.tsv."""
    return sorted(p.name for p in release.iterdir() if (p / "train.tsv").is_file()) if release.is_dir() else []


def _release_root(root: Path, lang: str) -> Path:
    """``root`` itself, or the one ``cv-corpus-*`` directory inside it (a parent was given)."""
    if (root / lang).is_dir():
        return root
    inner = sorted(p for p in root.glob("cv-corpus-*") if p.is_dir())
    if len(inner) == 1 and (inner[0] / lang).is_dir():
        return inner[0]
    if len(inner) > 1:
        raise BenchError(f"{root} holds several Common Voice releases ({', '.join(p.name for p in inner)})",
                         "point release at the one to use")
    release = inner[0] if len(inner) == 1 and not _languages_in(root) else root  # a parent: name the release in it
    present = _languages_in(release)
    raise MissingInput(
        lang, f"not in the Common Voice release {release} (no <language>/train.tsv there)",
        message=f"the Common Voice release {release} has no language {lang!r} (no {release / lang / 'train.tsv'})",
        hint=(f"languages in it: {', '.join(present)}; " if present else "it holds no language directory; ")
        + "choose --langs among them, or " + FETCH_HINT,
    )


_FILE_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content ("missing" when absent), memoised per process so that a worker
    replanning many cells reads each file once. The memo is keyed by the file's status change
    time (ctime) as well as its size and dates: any write changes the ctime, and unlike the
    modification time it cannot be set back."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if memo not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _FILE_DIGESTS[memo] = digest.hexdigest()
    return _FILE_DIGESTS[memo]


def _read_tsv(path: Path) -> list[dict[str, str]]:
    # sentences hold quotes of every kind: read fields verbatim (no quoting), as the release writes them
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames is None or not {"path", "sentence"} <= set(reader.fieldnames):
            raise BenchError(f"{path} is not a Common Voice table: it needs the columns 'path' and 'sentence' "
                             f"(found {', '.join(reader.fieldnames or []) or 'none'})",
                             "check that the release was unpacked completely")
        return [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]


class ReleaseSource:
    """An unpacked release: ``<root>/<lang>/{train,dev,test,validated}.tsv`` and ``clips/``."""

    def __init__(self, configured: str, lang: str) -> None:
        self.root = _release_root(find_release(configured), lang)
        self.dir = self.root / lang
        self.description = f"Common Voice release {self.root.name} ({self.dir})"
        for split in ("train", "dev", "test"):
            if not (self.dir / RELEASE_FILES[split]).is_file():
                raise BenchError(f"{self.dir} has no {RELEASE_FILES[split]}",
                                 "the language directory is incomplete; unpack it again")
        digest = hashlib.sha256(str(self.dir.resolve()).encode())
        for name in RELEASE_FILES.values():
            path = self.dir / name
            if path.is_file():
                stat = path.stat()
                digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        self.fingerprint = digest.hexdigest()[:16]
        self._rows: dict[str, list[Row]] = {}

    def identity(self, splits: tuple[str, ...]) -> dict[str, Any]:
        """What the data is, independent of where it lies: the release's name, the language and a
        SHA-256 of the content of the tsv files of ``splits`` (not of their dates)."""
        return {"release": self.root.name, "language": self.dir.name,
                "tsv_sha256": {RELEASE_FILES[s]: file_sha256(self.dir / RELEASE_FILES[s]) for s in splits}}

    def rows(self, split: str) -> list[Row]:
        if split not in self._rows:
            path = self.dir / RELEASE_FILES[split]
            if not path.is_file():
                raise BenchError(f"{self.dir} has no {path.name}", "unpack the release again, or use train_split = \"train\"")
            self._rows[split] = [Row(r["path"], r["sentence"], r.get("client_id", ""),
                                     normalise_gender(r.get("gender"))) for r in _read_tsv(path)]
        return self._rows[split]

    def audio(self, split: str, index: int) -> str:
        """The clip's path; a ``path`` that is absolute or leads out of the release (``..``, a
        symbolic link) raises ``ClipSkipped("path_outside_corpus")`` without opening anything."""
        path = inside(self.root, self.rows(split)[index].clip, base=self.dir / "clips")
        if path is None:
            raise ClipSkipped(PATH_OUTSIDE_CORPUS)
        return str(path)


# --------------------------------------------------------------------------- Hugging Face datasets
#: bench's split -> names it goes by in Hugging Face datasets
HF_SPLITS = {"train": ("train",), "dev": ("validation", "dev"), "test": ("test",), "validated": ("validated",)}


def load_hf(name: str, config: str) -> Any:
    import datasets

    path = Path(name).expanduser()
    try:
        if path.exists():
            target = path / config if (path / config).is_dir() else path
            if (target / "dataset_dict.json").is_file() or (target / "state.json").is_file():
                return datasets.load_from_disk(str(target))
            return datasets.load_dataset(str(target))
        if name.lower().startswith(GONE_FROM_HUB):
            raise BenchError(
                f"the Hugging Face dataset {name!r} is gone: Common Voice left the Hugging Face Hub in 2025",
                "download the release from the Mozilla Data Collective (https://datacollective.mozillafoundation.org), "
                "unpack it and set release = \"/path/to/cv-corpus-<version>\" under [datasets.common_voice]; a copy "
                "saved earlier with save_to_disk works as hf_dataset = \"/path/to/it\"",
            )
        return datasets.load_dataset(name, config)
    except BenchError:
        raise
    except Exception as exc:  # hub unreachable, unknown id, gated dataset, damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(
            f"could not load the Hugging Face dataset {name!r} (config {config!r}): {first}",
            "offline, save it where the hub is reachable (DatasetDict.save_to_disk) and set hf_dataset to that "
            "directory, or use an unpacked release with release = \"/path/to/cv-corpus-<version>\"",
        ) from None


class HFSource:
    """A ``datasets`` dataset in the Common Voice schema (``audio``, ``sentence``, ``client_id``)."""

    def __init__(self, name: str, config: str) -> None:
        import datasets

        self.name, self.config = name, config
        local = Path(name).expanduser()
        # paths in the dataset must stay inside it (a local copy) or inside the datasets cache (the hub)
        self.root = local.resolve() if local.exists() else Path(datasets.config.HF_DATASETS_CACHE).resolve()
        loaded = load_hf(name, config)
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({"train": loaded})
        self.splits: dict[str, Any] = {}
        for split, names in HF_SPLITS.items():
            for candidate in names:
                if candidate in loaded:
                    part = loaded[candidate]
                    missing = {"audio", "sentence"} - set(part.column_names)
                    if missing:
                        raise BenchError(
                            f"Hugging Face dataset {name!r} split {candidate!r} lacks the column(s) "
                            f"{', '.join(sorted(missing))} of the Common Voice schema",
                            "use a Common Voice dataset (columns audio, sentence, client_id)",
                        )
                    if isinstance(part.features["audio"], datasets.Audio):
                        part = part.cast_column("audio", datasets.Audio(decode=False))  # we decode, not datasets
                    self.splits[split] = part
                    break
        for split in ("train", "dev", "test"):
            if split not in self.splits:
                raise BenchError(f"Hugging Face dataset {name!r} has no {split} split "
                                 f"(it has {', '.join(loaded) or 'none'})",
                                 "Common Voice datasets have train, validation and test splits")
        self.description = f"Hugging Face dataset {name} ({config})"
        self.fingerprint = hashlib.sha256(
            "|".join(f"{s}:{getattr(d, '_fingerprint', '')}:{len(d)}" for s, d in sorted(self.splits.items())).encode()
            + name.encode() + config.encode()
        ).hexdigest()[:16]
        self._rows: dict[str, list[Row]] = {}

    def identity(self, splits: tuple[str, ...]) -> dict[str, Any]:
        """The dataset's name, configuration and, per split used, its ``datasets`` fingerprint and size."""
        return {"hf_dataset": self.name, "config": self.config,
                "splits": {s: {"fingerprint": getattr(self.splits[s], "_fingerprint", ""), "rows": len(self.splits[s])}
                           for s in splits if s in self.splits}}

    def rows(self, split: str) -> list[Row]:
        if split not in self._rows:
            if split not in self.splits:
                raise BenchError(f"Hugging Face dataset {self.name!r} has no {split} split",
                                 "use train_split = \"train\"")
            part = self.splits[split]
            sentences = list(part["sentence"])
            speakers = list(part["client_id"]) if "client_id" in part.column_names else [""] * len(sentences)
            genders = gender_column(part, len(sentences))
            clips = list(part["path"]) if "path" in part.column_names else [f"{split}-{i}" for i in range(len(sentences))]
            self._rows[split] = [Row(str(c or f"{split}-{i}"), s or "", sp or "", g)
                                 for i, (c, s, sp, g) in enumerate(zip(clips, sentences, speakers, genders))]
        return self._rows[split]

    def audio(self, split: str, index: int) -> str | bytes:
        item = self.splits[split][index]["audio"]
        if isinstance(item, dict):  # embedded bytes win; else a path, which must lie inside the dataset
            if item.get("bytes") is not None:
                return item["bytes"]
            item = item.get("path") or ""
        if isinstance(item, bytes):
            return item
        if not item:
            return b""
        path = inside(self.root, item, absolute_ok=True)
        if path is None:
            raise ClipSkipped(PATH_OUTSIDE_CORPUS)
        return str(path)
