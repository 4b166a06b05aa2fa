"""``bench download``: fetch ahead of time everything a selection reads, for machines without internet.

The selected models and datasets say what they need as :class:`harness.api.DownloadItem` objects
(``ModelSpec.downloads``, ``DatasetSpec.downloads``); the core never knows a plugin. Hub items
go into the Hugging Face cache (``$HF_HOME/hub``, or ``$HF_HUB_CACHE``) in the layout
``huggingface_hub`` itself writes (``blobs/<etag>``, ``snapshots/<commit>/<file>``,
``refs/<revision>``), so that ``from_pretrained`` finds them with ``HF_HUB_OFFLINE=1``.

Why bench writes the cache entries itself rather than calling ``snapshot_download``: the
installed ``huggingface_hub`` (2.x) downloads each file into a temporary name unique to the
process and deletes it on failure, so a transfer killed mid-file starts again from zero. bench
keeps a partial file per blob (``blobs/<etag>.bench-partial``) and continues it with an HTTP range
request (``huggingface_hub``'s own ``http_get``, which also retries dropped connections in
process), then checks the file against the size and hash the hub reported (SHA-256 for LFS
files, the git blob id for small ones) before it becomes visible in the cache.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.api import DownloadItem
from harness.errors import BenchError
from harness.plan.config import RunConfig
from harness.plan.planner import ALL, dataset_request, resolve_models, select_languages
from harness.plugins import Registry

PARTIAL_SUFFIX = ".bench-partial"
#: seconds to wait for the hub's answer about one repository (a firewalled node never answers)
ASK_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- what a selection needs
@dataclass(frozen=True)
class Needed:
    """A download item and the models or dataset languages that need it."""

    item: DownloadItem
    needed_by: tuple[str, ...]


def needed(config: RunConfig, registry: Registry) -> list[Needed]:
    """Every download item of the configured models and dataset languages (each item once)."""
    found: dict[tuple, tuple[DownloadItem, list[str]]] = {}

    def add(owner: str, items: Iterable[DownloadItem]) -> None:
        for item in items:
            key = (item.kind, item.repo_type, item.repo_id, item.revision, item.label)
            found.setdefault(key, (item, []))[1].append(owner)

    for name, (model, options) in resolve_models(config, registry).items():
        if model.spec.downloads is not None:
            add(name, model.spec.downloads(options))
    dataset_names = sorted(registry.datasets) if ALL in config.datasets else list(config.datasets)
    for dname in dataset_names:
        spec = registry.dataset(dname).spec
        if spec.downloads is None:
            continue
        options = dict(config.dataset_options.get(dname, {}))
        for lang in select_languages(config.langs, spec.languages, dname):
            add(f"{dname}:{lang}", spec.downloads(dataset_request(config, dname, lang, config.seeds[0], options)))
    return [Needed(item, tuple(owners)) for item, owners in found.values()]


# --------------------------------------------------------------------------- hub repositories
@dataclass(frozen=True)
class HubFile:
    name: str
    size: int | None
    #: SHA-256 of an LFS file, else None
    sha256: str | None
    #: git blob id (SHA-1 of "blob <size>\\0" + content) of a regular file
    blob_id: str | None

    @property
    def etag(self) -> str:
        """The blob's name in the Hugging Face cache (what the hub sends as its ETag)."""
        return self.sha256 or self.blob_id or ""


@dataclass(frozen=True)
class HubSnapshot:
    """A hub item resolved against the hub: the commit and the files to fetch."""

    item: DownloadItem
    commit: str
    files: tuple[HubFile, ...]
    storage: Path

    def blob(self, f: HubFile) -> Path:
        return self.storage / "blobs" / f.etag

    def pointer(self, f: HubFile) -> Path:
        return self.storage / "snapshots" / self.commit / f.name

    def state(self, f: HubFile) -> str:
        if self.pointer(f).exists() and self.blob(f).exists():
            return "present"
        partial = self.blob(f).with_name(f.etag + PARTIAL_SUFFIX)
        if partial.exists():
            return f"partial ({human_bytes(partial.stat().st_size)} of {human_bytes(f.size)})"
        return "to fetch"


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def select_files(names: Sequence[str], item: DownloadItem) -> list[str]:
    """The repository files an item asks for: ``allow_patterns``, then the first ``one_of``
    group that matches any file (one format of weights, not every format)."""
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in item.allow_patterns)]
    for group in item.one_of:
        matched = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in group)]
        if matched:
            chosen += [n for n in matched if n not in chosen]
            break
    return chosen


def resolve_hub(item: DownloadItem) -> HubSnapshot:
    """Ask the hub for the item's commit, files, sizes and hashes (``HF_ENDPOINT`` honoured)."""
    from huggingface_hub import HfApi
    from huggingface_hub.file_download import repo_folder_name

    api = HfApi()
    if item.repo_type == "dataset":
        info = api.dataset_info(item.repo_id, revision=item.revision, files_metadata=True, timeout=ASK_TIMEOUT_S)
    else:
        info = api.model_info(item.repo_id, revision=item.revision, files_metadata=True, timeout=ASK_TIMEOUT_S)
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    files = []
    for name in select_files(list(siblings), item):
        s = siblings[name]
        lfs = s.lfs
        files.append(HubFile(name, s.size if s.size is not None else (lfs.size if lfs else None),
                             lfs.sha256 if lfs else None, s.blob_id))
    storage = hub_cache() / repo_folder_name(repo_id=item.repo_id, repo_type=item.repo_type)
    return HubSnapshot(item, str(info.sha), tuple(files), storage)


def _git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, f: HubFile) -> str | None:
    """None when ``path`` has the size and hash the hub reported, else what is wrong."""
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        return f"{size} bytes where the hub says {f.size}"
    if f.sha256:
        actual = _sha256(path)
        if actual != f.sha256:
            return f"SHA-256 {actual[:12]}… where the hub says {f.sha256[:12]}…"
    elif f.blob_id:
        actual = _git_blob_id(path)
        if actual != f.blob_id:
            return f"git blob id {actual[:12]}… where the hub says {f.blob_id[:12]}…"
    return None


def _link(snapshot: HubSnapshot, f: HubFile) -> None:
    """Make the snapshot entry of a blob (a relative symlink, as huggingface_hub does; a copy
    where the file system has none) and the ref of a named revision."""
    pointer, blob = snapshot.pointer(f), snapshot.blob(f)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:
        shutil.copyfile(blob, pointer)
    revision = snapshot.item.revision or "main"
    if revision != snapshot.commit:
        ref = snapshot.storage / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(snapshot.commit)


@dataclass
class Tally:
    fetched_files: int = 0
    fetched_bytes: int = 0
    resumed_files: int = 0
    present_files: int = 0
    present_bytes: int = 0
    #: (what, cause): printed grouped by cause, each cause once
    problems: list[tuple[str, str]] = field(default_factory=list)

    def problem(self, what: str, cause: str) -> None:
        self.problems.append((what, cause))


def fetch_file(snapshot: HubSnapshot, f: HubFile, tally: Tally) -> None:
    """One file into the cache: verified when already there, else fetched (continuing a partial
    file), verified, then made visible. A file that fails verification is deleted and reported.

    Holds the lock huggingface_hub takes for the same blob (``<cache>/.locks/<repo>/<etag>.lock``),
    so two downloads of one file (two bench processes, or bench and ``hf download``) take turns."""
    from filelock import FileLock

    lock = snapshot.storage.parent / ".locks" / snapshot.storage.name / f"{f.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        _fetch_file(snapshot, f, tally)


def _fetch_file(snapshot: HubSnapshot, f: HubFile, tally: Tally) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    blob = snapshot.blob(f)
    label = f"{snapshot.item.repo_id}/{f.name}"
    if blob.exists():
        problem = verify(blob, f)
        if problem is None:
            _link(snapshot, f)
            tally.present_files += 1
            tally.present_bytes += blob.stat().st_size
            return
        print(f"{label}: the cached copy is damaged ({problem}); fetching it again")
        blob.unlink()
    blob.parent.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(f.etag + PARTIAL_SUFFIX)
    start = partial.stat().st_size if partial.exists() else 0
    if f.size is not None and start > f.size:  # not a prefix of this file
        partial.unlink()
        start = 0
    if start:
        print(f"{label}: continuing at {human_bytes(start)} of {human_bytes(f.size)}")
        tally.resumed_files += 1
    url = hf_hub_url(snapshot.item.repo_id, f.name, repo_type=snapshot.item.repo_type, revision=snapshot.commit)
    with partial.open("ab") as out:
        http_get(url, out, resume_size=start, headers=build_hf_headers(), expected_size=f.size,
                 displayed_filename=f.name)
    problem = verify(partial, f)
    if problem is not None:
        partial.unlink()
        tally.problem(label, f"the downloaded file is corrupt ({problem}); it was deleted: run `bench download` "
                             "again")
        return
    partial.replace(blob)
    _link(snapshot, f)
    tally.fetched_files += 1
    tally.fetched_bytes += f.size or blob.stat().st_size


# --------------------------------------------------------------------------- the command
def human_bytes(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _no_answer(exc: BaseException) -> bool:
    """Whether the hub could not be reached at all (no connection, no answer in time), as opposed
    to an answer about one repository (unknown, gated)."""
    # by class name: the HTTP client under huggingface_hub changed (requests, httpx, httpx2)
    names = {"ConnectError", "ConnectTimeout", "ReadTimeout", "PoolTimeout", "TimeoutException", "ConnectionError",
             "Timeout"}
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, (ConnectionError, TimeoutError)) or {c.__name__ for c in type(seen).__mro__} & names:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    first = " ".join(first.split())[:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def download(config: RunConfig, registry: Registry, dry_run: bool = False) -> int:
    """Fetch (or, with ``dry_run``, list) what the configured selection needs; returns the exit
    status: 0 when everything that a program can fetch is here and verified, 1 otherwise."""
    from huggingface_hub import constants

    items = needed(config, registry)
    if not items:
        print("nothing to download: the selected models and datasets need no files from the internet "
              "(they are built here or read local files)")
        return 0
    if constants.HF_HUB_OFFLINE and any(n.item.kind == "hub" for n in items):
        raise BenchError("HF_HUB_OFFLINE is set, so the hub cannot be asked what to download",
                         "run `bench download` where the hub is reachable, without HF_HUB_OFFLINE")
    start = time.perf_counter()
    tally = Tally()
    manual: list[Needed] = []
    rows: list[list[str]] = []
    to_fetch = 0
    unreachable = ""
    snapshots: list[HubSnapshot] = []
    for need in items:
        item = need.item
        if item.kind == "manual":
            manual.append(need)
            continue
        if item.kind == "call":
            try:
                here = item.present() if item.present is not None else None
                rows.append([item.label, "(the plugin's own download)", "",
                             "present" if here else ("to fetch" if here is False else "fetched if missing"),
                             item.destination or "-"])
                if not here and not dry_run and item.fetch is not None:
                    item.fetch()
                    tally.fetched_files += 1
            except BenchError as exc:  # a toolkit that is not installed, a source that refuses
                tally.problem(item.label, exc.message + (f" ({exc.hint})" if exc.hint else ""))
            continue
        if item.kind != "hub":
            tally.problem(item.label, f"unknown download kind {item.kind!r} (a plugin's bug)")
            continue
        if unreachable:  # the hub did not answer for an earlier item: do not wait for each of the others
            tally.problem(item.label, unreachable)
            continue
        try:
            snapshot = resolve_hub(item)
        except Exception as exc:  # unreachable hub, unknown repository, gated: reported per item
            cause = f"cannot ask the hub ({_first_line(exc)})"
            tally.problem(item.label, cause)
            if _no_answer(exc):
                unreachable = cause
            continue
        if not snapshot.files:
            tally.problem(item.label, "the repository has none of the files asked for "
                                      f"({', '.join(item.allow_patterns)})")
            continue
        snapshots.append(snapshot)
        for f in snapshot.files:
            state = snapshot.state(f)
            to_fetch += 0 if state == "present" else (f.size or 0)
            rows.append([item.label, f.name, human_bytes(f.size), state, str(snapshot.storage)])
    if rows:
        from tabulate import tabulate

        print(tabulate(rows, headers=["item", "file", "size", "state", "destination"]))
        total = sum(f.size or 0 for s in snapshots for f in s.files)
        print(f"\n{len(snapshots)} hub repositories, {sum(len(s.files) for s in snapshots)} files, "
              f"{human_bytes(total)} in all, {human_bytes(to_fetch)} to fetch into {hub_cache()}")
    if not dry_run:
        for snapshot in snapshots:
            for f in snapshot.files:
                try:
                    fetch_file(snapshot, f, tally)
                except (OSError, ValueError) as exc:  # network errors after the in-process retries
                    tally.problem(f"{snapshot.item.repo_id}/{f.name}", f"{_first_line(exc)} (run `bench download` "
                                                                      "again: it continues where it stopped)")
                except Exception as exc:  # huggingface_hub's HTTP errors
                    tally.problem(f"{snapshot.item.repo_id}/{f.name}", _first_line(exc))
    for need in manual:
        print(f"\n{need.item.label} cannot be downloaded by a program (needed by {', '.join(need.needed_by)}). "
              "Steps:")
        for i, step in enumerate(need.item.steps, 1):
            print(f"  {i}. {step}")
    if not dry_run:
        seconds = time.perf_counter() - start
        print(f"\nfetched {tally.fetched_files} file(s), {human_bytes(tally.fetched_bytes)}"
              + (f" ({tally.resumed_files} continued from a partial download)" if tally.resumed_files else "")
              + f"; {tally.present_files} already present and verified ({human_bytes(tally.present_bytes)}); "
              f"{len(tally.problems)} problem(s); {seconds:.1f} s")
        if not tally.problems and snapshots:
            print(f"ready: copy {hub_cache().parent if hub_cache().name == 'hub' else hub_cache()} to the "
                  "machine that runs the matrix (or point HF_HOME at a shared copy) and run there with "
                  "HF_HUB_OFFLINE=1")
    elif tally.problems or manual:
        print()
    by_cause: dict[str, list[str]] = {}
    for what, cause in tally.problems:
        by_cause.setdefault(cause, []).append(what)
    for cause, names in by_cause.items():
        print(f"problem: {cause}: {', '.join(names)}")
    if any("cannot ask the hub" in cause for cause in by_cause):
        print("hint: run `bench download` where https://huggingface.co (or HF_ENDPOINT) is reachable, e.g. a "
              "login node; then copy $HF_HOME to the machine without internet")
    return 1 if tally.problems else 0
