"""Plan a run (resolve every name first, so typos fail before any work) and execute it.

Execution claims each cell in the store before it is computed (so concurrent runs share the
work), hands cells to the configured executor, and stores each result or failure as it comes
back, in the calling process.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.api import DatasetSpec, DatasetSplits, MetricSpec, ModelSpec
from harness.config import RunConfig, check_sections, runtime_fingerprint
from harness.errors import BenchError, did_you_mean
from harness.matrix import Cell, cell_identity, cell_key
from harness.device import check_runtime
from harness.cellwork import CellFailure, CellResult, CellTask, checkpoint_path, data_request, use_registry
from harness.plugins import Registered, Registry, load_registry
from harness.prepare import prepare_models
from harness.progress import Progress
from harness.provenance import git_revision, machine, package_versions
from harness.store import ResultStore
from harness.train import CellOutcome

ALL = "all"


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    key: str
    identity: dict[str, Any]
    model: Registered[ModelSpec]
    dataset: Registered[DatasetSpec]
    model_options: Mapping[str, Any]
    dataset_options: Mapping[str, Any]


@dataclass(frozen=True)
class Plan:
    cells: tuple[PlannedCell, ...]
    metrics: tuple[MetricSpec, ...]


def _resolve_model(name: str, config: RunConfig, registry: Registry) -> tuple[Registered[ModelSpec], dict]:
    options = dict(config.model_options.get(name, {}))
    alias_of = options.pop("from", None)
    if alias_of is not None and name not in registry.models:
        if not isinstance(alias_of, str):
            raise BenchError(f"[models.{name}] from must be a model name such as 'hf:/path/to/checkpoint'")
        found = registry.model(alias_of)
        spec = dataclasses.replace(found.spec, name=name, metadata={**found.spec.metadata, "from": alias_of})
        return Registered(spec, found.origin), options
    return registry.model(name), options


def resolve_models(config: RunConfig, registry: Registry) -> dict[str, tuple[Registered[ModelSpec], dict]]:
    """The configured models (``all`` and groups expanded, aliases resolved) and their options."""
    model_names = list(config.models)
    if ALL in model_names:
        aliases = [n for n, opts in config.model_options.items() if "from" in opts]
        model_names = sorted(set(registry.models) | set(aliases))
    model_names = registry.expand_models(model_names)
    resolved = {name: _resolve_model(name, config, registry) for name in model_names}
    check_sections(config, registry, model_names)
    for name, (model, options) in resolved.items():  # declared options: typos fail before any cell
        for key in options:
            if model.spec.options and key not in model.spec.options:
                raise BenchError(f"[models.{name}]: unknown option {key!r}.{did_you_mean(key, model.spec.options)}",
                                 f"options of {name}: {', '.join(model.spec.options)}")
    return resolved


def plan_run(config: RunConfig, registry: Registry) -> Plan:
    models = resolve_models(config, registry)

    dataset_names = sorted(registry.datasets) if ALL in config.datasets else list(config.datasets)
    datasets = {name: registry.dataset(name) for name in dataset_names}
    metrics = tuple(registry.metric(name).spec for name in config.metrics)

    cells: list[PlannedCell] = []
    for dname, dataset in datasets.items():
        options = dict(config.dataset_options.get(dname, {}))
        if dataset.spec.options:
            for key in options:
                if key not in dataset.spec.options:
                    raise BenchError(
                        f"[datasets.{dname}]: unknown option {key!r}.{did_you_mean(key, dataset.spec.options)}",
                        f"options of {dname}: {', '.join(dataset.spec.options)}",
                    )
        supported = dataset.spec.languages
        langs = list(supported) if ALL in config.langs else list(config.langs)
        for lang in langs:
            if lang not in supported:
                raise BenchError(
                    f"dataset {dname!r} has no language {lang!r}.{did_you_mean(lang, supported)} "
                    f"Languages of {dname}: {', '.join(supported)}.",
                    "choose --langs from that list (codes as in Common Voice), or --langs all",
                )
            for seed in config.seeds:
                for mname, (model, model_options) in models.items():
                    cell = Cell(mname, dname, lang, seed)
                    identity = cell_identity(
                        cell,
                        model_version=model.spec.version,
                        model_metadata=model.spec.metadata,
                        model_options=model_options,
                        dataset_version=dataset.spec.version,
                        dataset_options=options,
                        train=config.train,
                    )
                    cells.append(PlannedCell(cell, cell_key(identity), identity, model, dataset,
                                             model_options, options))
    return Plan(tuple(cells), metrics)


def merge_skipped(*parts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Sum skip counts by split and reason (the dataset's and the training loop's)."""
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        for split, reasons in part.items():
            for reason, count in reasons.items():
                if count:
                    out.setdefault(split, {})[reason] = out.get(split, {}).get(reason, 0) + int(count)
    return out


def build_record(planned: PlannedCell, outcome: CellOutcome, data: DatasetSplits, config: RunConfig) -> dict[str, Any]:
    device = outcome.train_info.get("device", "cpu")
    return {
        "identity": planned.identity,
        "model_origin": str(planned.model.origin),
        "dataset_origin": str(planned.dataset.origin),
        "data": dict(data.info),
        "skipped": merge_skipped(data.skipped, outcome.skipped),
        "vocabulary": list(outcome.vocabulary),
        "train": outcome.train_info,
        "eval": {n: {"utterances": r.utterances, "seconds": r.seconds} for n, r in outcome.splits.items()},
        "runtime": dataclasses.asdict(config.runtime),
        "preset": config.preset,
        "seed": planned.cell.seed,
        "packages": package_versions(),
        "git_revision": git_revision(),
        "machine": machine(device),
    }


@dataclass(frozen=True)
class RunSummary:
    planned: int
    already_done: int
    computed: int
    seconds: float
    #: cells that failed in this run
    failed: tuple[CellFailure, ...] = ()
    #: failed in an earlier run and left alone (retry them with retry_failed)
    skipped_failed: int = 0
    #: computed or being computed by another run on the same store
    left_to_others: int = 0


class _Heartbeat(threading.Thread):
    """Renews this run's claims while their cells are computed (own SQLite connection)."""

    def __init__(self, store: ResultStore, every_s: float = 30.0) -> None:
        super().__init__(daemon=True, name="bench-heartbeat")
        self.path, self.owner, self.every_s = store.path, store.owner, every_s
        self.held: set[str] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self) -> None:
        with ResultStore(self.path, owner=self.owner) as store:
            while not self.stopped.wait(self.every_s):
                with self.lock:
                    keys = list(self.held)
                try:
                    store.heartbeat(keys)
                except Exception:  # a busy store: try again next time
                    pass

    def stop(self) -> None:
        self.stopped.set()


def _log_line(result: CellResult) -> str:
    scores = " ".join(f"{m}={v:.3f}" for m, v in result.metrics.get("test", {}).items())
    skipped = "; ".join(f"{split}: " + ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
                        for split, reasons in result.record.get("skipped", {}).items())
    resumed = result.record.get("train", {}).get("resumed_from_update")
    return (f"done  {result.cell.label()}: test {scores} ({result.duration_s:.0f} s)"
            + (f"; resumed at update {resumed}" if resumed else "")
            + (f"; skipped {skipped}" if skipped else ""))


def execute(plan: Plan, config: RunConfig, store: ResultStore, progress: Progress | None = None,
            registry: Registry | None = None, retry_failed: bool = False) -> RunSummary:
    start = time.perf_counter()
    keys = [c.key for c in plan.cells]
    done = store.done_keys(keys)
    runtime = runtime_fingerprint(config)  # a failure under another runtime does not stick
    failed_before = {f.key for f in store.failures(keys) if f.runtime in ("", runtime)}
    pending = [c for c in plan.cells if c.key not in done and (retry_failed or c.key not in failed_before)]
    skipped_failed = sum(1 for c in plan.cells if c.key not in done and c.key in failed_before and not retry_failed)
    if progress:
        progress.log(f"{len(plan.cells)} cells planned, {len(done)} already in {store.path}, {len(pending)} to compute"
                     + (f", {skipped_failed} failed before (not retried; use --retry-failed)" if skipped_failed else ""))
    registry = registry or load_registry()
    # runtime settings (device, precision, executor and its options) fail here, before any work
    executor = check_runtime(config, registry, here=any(p.model.spec.prepare is not None for p in pending))
    checked: set = set()
    for planned in pending:  # fail on a missing checkpoint or data before computing anything
        cell = planned.cell
        if cell.model not in checked and planned.model.spec.check is not None:
            planned.model.spec.check()
        checked.add(cell.model)
        data_key = (cell.dataset, cell.language, repr(sorted(planned.dataset_options.items())))
        if data_key not in checked and planned.dataset.spec.check is not None:
            planned.dataset.spec.check(data_request(config, cell, planned.dataset_options))
        checked.add(data_key)

    # models made here (pre-trained, say) are made once, in this process, before any cell
    prepare_models(((p.model.spec, p.model_options) for p in pending), config, registry, progress)
    use_registry(registry)  # cells computed in this process see exactly the plugins the plan saw
    heartbeat = _Heartbeat(store)
    heartbeat.start()
    counts = {"computed": 0, "others": 0}
    failures: list[CellFailure] = []

    def tasks():
        for planned in pending:
            if not store.claim(planned.key):
                counts["others"] += 1
                continue
            with heartbeat.lock:
                heartbeat.held.add(planned.key)
            yield CellTask(config, planned.cell, planned.key)

    def on_result(result: CellResult | CellFailure) -> None:
        c = result.cell
        if isinstance(result, CellResult):
            store.put(result.key, model=c.model, dataset=c.dataset, language=c.language, seed=c.seed,
                      metrics=result.metrics, record=result.record, hypotheses=result.hypotheses,
                      duration_s=result.duration_s)
            checkpoint_path(config, result.key).unlink(missing_ok=True)
            counts["computed"] += 1
            line = _log_line(result)
        else:
            store.record_failure(result.key, model=c.model, dataset=c.dataset, language=c.language, seed=c.seed,
                                 kind=result.kind, message=result.message, detail=result.detail,
                                 runtime=runtime)
            failures.append(result)
            line = f"FAILED {c.label()}: {result.message}"
        with heartbeat.lock:
            heartbeat.held.discard(result.key)
        if progress:
            progress.finish_cell(line)

    try:
        executor.run(tasks(), on_result, progress)
    finally:
        heartbeat.stop()
        with heartbeat.lock:
            for key in heartbeat.held:  # interrupted: let the next run take these at once
                store.release(key)
    return RunSummary(len(plan.cells), len(done), counts["computed"], time.perf_counter() - start, tuple(failures),
                      skipped_failed, counts["others"])
