"""Uniting results stores computed on machines that share no disk (a laptop and a cluster).

A cell's key says what was computed (model, data, settings, seed), so stores are united by key:
a key held by one store is copied with its hypotheses, record (provenance included: machine,
packages, git revision, the node that ran it) and finish time; a key held by several stores
with the same result (identical scores and identical hypotheses) is copied once. A key whose
stores disagree is a *conflict*: it is reported and neither version is written (the target
keeps what it held), because choosing one would hide that the same computation gave two answers
(``keep_first`` writes the first listed store's version, still reporting the conflict).
Failures are kept for the keys no store has a result for (the latest record of each), and
dropped where a result exists. Claims (runs in progress) are not copied. A copied cell's stored
outputs (``<store>.outputs/``, what decoders other than greedy read) are copied beside the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BenchError
from harness.store.outputs import Blob, OutputStore
from harness.store.results import Failure, ResultStore, StoredCell


def _copy_outputs(source: Path, into: Path, cell: StoredCell) -> None:
    """The cell's stored outputs (log-probabilities, training text) copied beside the target store;
    files missing at the source are left out (decoders other than greedy then say so)."""
    files = [*cell.record.log_probs.values(), *([cell.record.train_text] if cell.record.train_text else []),
             *cell.record.genders.values()]
    src, dst = OutputStore.beside(source), OutputStore.beside(into)
    for f in files:
        if src.path(f.sha256, f.suffix).exists() and not dst.path(f.sha256, f.suffix).exists():
            dst.put(Blob(f.sha256, f.suffix, src.read(f.sha256, f.suffix)))


@dataclass(frozen=True)
class Version:
    """One store's result for a conflicting key."""
    store: Path
    metrics: dict[str, dict[str, float]]
    #: how many hypotheses differ from the first version's
    differing_hypotheses: int


@dataclass(frozen=True)
class Conflict:
    key: str
    model: str
    dataset: str
    language: str
    seed: int
    versions: tuple[Version, ...]

    def label(self) -> str:
        return f"{self.model} / {self.dataset}:{self.language} / seed {self.seed}"


@dataclass(frozen=True)
class MergeSummary:
    into: Path
    sources: tuple[Path, ...]
    #: cells written to the target (new to it)
    added: int
    #: cells the target held already, or found in several stores with the same result
    duplicates: int
    conflicts: tuple[Conflict, ...]
    #: failures copied (their cell has no result anywhere)
    failures_kept: int
    #: failures dropped because another store has the cell's result
    failures_superseded: int
    cells_in_target: int


def _same_result(a: tuple[StoredCell, dict], b: tuple[StoredCell, dict]) -> bool:
    (ca, ha), (cb, hb) = a, b
    return (ca.metrics == cb.metrics and ha == hb
            and (ca.model, ca.dataset, ca.language, ca.seed) == (cb.model, cb.dataset, cb.language, cb.seed))


def _differing(ha: dict, hb: dict) -> int:
    rows_a = {(split, utt): (ref, hyp) for split, rows in ha.items() for utt, ref, hyp in rows}
    rows_b = {(split, utt): (ref, hyp) for split, rows in hb.items() for utt, ref, hyp in rows}
    return sum(1 for k in rows_a.keys() | rows_b.keys() if rows_a.get(k) != rows_b.get(k))


def _open_source(path: Path) -> ResultStore:
    if not path.exists():
        raise BenchError(f"results store {str(path)!r} (to merge) does not exist",
                         "give the paths of existing stores, e.g. copied from each machine with scp or rsync")
    return ResultStore(path, readonly=True)


def merge_stores(sources: Sequence[str | Path], into: str | Path, keep_first: bool = False) -> MergeSummary:
    """Unite ``sources`` into ``into`` (created when missing; an existing store takes part in the
    comparison and keeps every cell it holds). Never overwrites a stored result.

    ``keep_first``: for a conflicting key new to the target, write the version of the first
    store listed that has it (the conflict is still reported)."""
    into = Path(into)
    paths = tuple(Path(s) for s in sources)
    if not paths:
        raise BenchError("bench merge needs at least one store to merge", "bench merge A.sqlite B.sqlite --into C.sqlite")
    resolved_into = into.resolve()
    for path in paths:
        if path.resolve() == resolved_into:
            raise BenchError(f"{str(path)!r} is both a store to merge and the target",
                             "--into names the store to write; list only the other stores before it")
    if len({p.resolve() for p in paths}) != len(paths):
        raise BenchError("the same store is listed twice", "list each store to merge once")

    versions: dict[str, list[tuple[Path, StoredCell, dict]]] = {}
    failures: dict[str, Failure] = {}
    for path in paths:  # read everything first: a bad source fails before the target is touched
        with _open_source(path) as store:
            for cell in store.cells():
                versions.setdefault(cell.key, []).append((path, cell, store.all_hypotheses(cell.key)))
            for failure in store.failures():
                if failure.key not in failures or failure.failed_at > failures[failure.key].failed_at:
                    failures[failure.key] = failure

    added = duplicates = kept = superseded = 0
    conflicts: list[Conflict] = []
    with ResultStore(into) as target:
        held = {c.key: c for c in target.cells()}
        for key, found in versions.items():
            candidates = ([(into, held[key], target.all_hypotheses(key))] if key in held else []) + found
            first = candidates[0]
            if all(_same_result((first[1], first[2]), (c, h)) for _, c, h in candidates[1:]):
                if key in held:
                    duplicates += len(found)
                else:
                    _copy_outputs(first[0], into, first[1])
                    target.import_cell(first[1], first[2])
                    added += 1
                    duplicates += len(found) - 1
                continue
            cell = first[1]
            if keep_first and key not in held:
                _copy_outputs(first[0], into, first[1])
                target.import_cell(first[1], first[2])
                added += 1
            conflicts.append(Conflict(key, cell.model, cell.dataset, cell.language, cell.seed, tuple(
                Version(path, c.metrics, _differing(first[2], h)) for path, c, h in candidates)))
        results = held.keys() | versions.keys()
        own_failures = {f.key: f for f in target.failures()}
        for key, failure in failures.items():
            if key in results:
                superseded += 1
            elif key not in own_failures or failure.failed_at > own_failures[key].failed_at:
                target.import_failure(failure)
                kept += 1
        total = len(target.done_keys())
    return MergeSummary(into, paths, added, duplicates, tuple(conflicts), kept, superseded, total)
