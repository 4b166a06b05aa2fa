"""Execute a planned run (see :mod:`harness.planning`: every name is resolved before any work).

Execution claims each cell in the store before it is computed (so concurrent runs share the
work), hands cells to the configured executor, and stores each result or failure as it comes
back, in the calling process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from harness.cellwork import CellFailure, CellResult, CellTask
from harness.config import RunConfig
from harness.planning import ALL, Plan, PlannedCell, checkpoint_path, data_request, plan_run, resolve_models
from harness.plugins import Registry, process_registry
from harness.prepare import prepare_models
from harness.progress import Progress
from harness.store import ResultStore

__all__ = ["ALL", "Plan", "PlannedCell", "RunSummary", "execute", "plan_run", "resolve_models"]


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
    failed_before = {f.key for f in store.failures(keys)}
    pending = [c for c in plan.cells if c.key not in done and (retry_failed or c.key not in failed_before)]
    skipped_failed = sum(1 for c in plan.cells if c.key not in done and c.key in failed_before and not retry_failed)
    if progress:
        progress.log(f"{len(plan.cells)} cells planned, {len(done)} already in {store.path}, {len(pending)} to compute"
                     + (f", {skipped_failed} failed before (not retried; use --retry-failed)" if skipped_failed else ""))
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

    registry = registry or process_registry()
    # models made here (pre-trained, say) are made once, in this process, before any cell
    prepare_models(((p.model.spec, p.model_options) for p in pending), config, registry, progress)
    executor_spec = registry.executor(config.executor).spec
    executor = executor_spec.create(config.executor_options.get(config.executor, {}), config)
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
                                 kind=result.kind, message=result.message, detail=result.detail)
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
