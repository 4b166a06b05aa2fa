"""Execute a planned run (see :mod:`harness.plan.planner`: every name is resolved before any work).

Execution claims each cell in the store before it is computed (so concurrent runs share the
work), hands cells to the configured executor, and stores each result or failure as it comes
back, in the calling process.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass

from harness.run.cell import CellFailure, CellResult, CellTask
from harness.store.outputs import OutputStore
from harness.plan.config import RunConfig, runtime_fingerprint
from harness.engine.device import resolve_device, resolve_precision
from harness.errors import BenchError, MissingInput
from harness.plan.sweep import config_at
from harness.plan.planner import ALL, Plan, PlannedCell, checkpoint_path, data_request, plan_run, resolve_models
from harness.plugins import Registry, plugin_call, process_registry
from harness.run.executors import Executor
from harness.run.prepare_models import prepare_models
from harness.run.progress import Progress
from harness.run.tracking import TrackerSet, WarnOnce, new_run_id, resolve_trackers
from harness.store.results import ResultStore
from harness.tracking import RunFinished, RunStarted

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
                        for split, reasons in result.record.skipped.items())
    resumed = result.record.train.resumed_from_update
    return (f"done  {result.cell.label()}: test {scores} ({result.duration_s:.0f} s)"
            + (f"; resumed at update {resumed}" if resumed else "")
            + (f"; skipped {skipped}" if skipped else ""))


def check_inputs(pending: list[PlannedCell], config: RunConfig) -> dict[str, tuple[str, BenchError]]:
    """Run every model's and every language's check once: by cell key, what cannot be used
    (the model's name or ``dataset:language``) and why."""
    problems: dict[tuple, tuple[str, BenchError] | None] = {}
    by_key: dict[str, tuple[str, BenchError]] = {}
    for planned in pending:
        cell = planned.cell
        model_key = ("model", cell.model)
        if model_key not in problems:
            problems[model_key] = None
            if planned.model.spec.check is not None:
                try:
                    plugin_call(planned.model, "check", planned.model.spec.check)
                except BenchError as exc:
                    problems[model_key] = (cell.model, exc)
        data_key = ("data", cell.dataset, cell.language, repr(sorted(planned.dataset_options.items())))
        if data_key not in problems:
            problems[data_key] = None
            if planned.dataset.spec.check is not None:
                try:
                    plugin_call(planned.dataset, "check", planned.dataset.spec.check,
                                data_request(config, cell, planned.dataset_options))
                except BenchError as exc:
                    problems[data_key] = (f"{cell.dataset}:{cell.language}", exc)
        problem = problems[model_key] or problems[data_key]
        if problem is not None:
            by_key[planned.key] = problem
    return by_key


def inputs_error(problems: dict[str, tuple[str, BenchError]]) -> BenchError:
    """One error naming every model and language that cannot be used, in one readable block:
    problems sharing a cause and a fix (a :class:`MissingInput` of the same ``cause``, or the same
    message) are one line listing the affected names once, and each fix is said once."""
    labels: dict[str, BenchError] = {}
    for label, exc in problems.values():
        labels.setdefault(label, exc)
    groups: dict[tuple[str, str], list[str]] = {}
    for label, exc in labels.items():
        cause = exc.cause if isinstance(exc, MissingInput) else exc.message
        groups.setdefault((cause, exc.hint or ""), []).append(label)
    lines = [f"{len(labels)} planned input(s) cannot be used here:"]
    fixes: list[str] = []
    for (cause, hint), names in groups.items():
        if len(names) == 1:  # alone: its own full message
            lines.append(f"  {names[0]}: {labels[names[0]].message}")
        else:
            lines.append(f"  {cause} ({len(names)}): {', '.join(names)}")
        if hint and hint not in fixes:
            fixes.append(hint)
    fixes.append("or run with --keep-going to compute the rest and record these cells as failed")
    return BenchError("\n".join(lines), "\n  ".join(fixes))


def execute(plan: Plan, config: RunConfig, store: ResultStore, progress: Progress | None = None,
            registry: Registry | None = None, retry_failed: bool = False, keep_going: bool = False) -> RunSummary:
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
    registry = registry or process_registry()
    # runtime settings (device, precision, executor and its options) fail here, before any work
    executor = check_runtime(config, registry, here=any(p.model.spec.prepare is not None for p in pending))
    # a missing checkpoint or data: every problem is found before computing anything
    problems = check_inputs(pending, config)
    unusable: list[CellFailure] = []
    if problems and not keep_going:
        raise inputs_error(problems)
    for planned in pending:  # --keep-going: these cells are failed (kind "user"), the others run
        _, exc = problems.get(planned.key, (None, None))
        if exc is not None:
            c = planned.cell
            store.record_failure(planned.key, model=c.model, dataset=c.dataset, language=c.language, seed=c.seed,
                                 kind="user", message=exc.message, detail=exc.hint or "", runtime=runtime)
            unusable.append(CellFailure(planned.key, c, "user", exc.message, exc.hint or ""))
            if progress:
                progress.log(f"FAILED {c.label()}: {exc.message}")
    pending = [p for p in pending if p.key not in problems]

    run_id = new_run_id()
    warn_once = WarnOnce(progress.log if progress else None)
    tracking = TrackerSet.open(config, registry, "run", run_id, warn=warn_once)
    if progress:
        progress.matrix([c.cell for c in plan.cells], _stored_scores(store, plan, done, config), config.metrics[0],
                        len(pending))
    cells = [c.cell for c in plan.cells]
    tracking.emit(RunStarted(run_id, len(plan.cells), len(pending), tuple(dict.fromkeys(c.model for c in cells)),
                             tuple(dict.fromkeys(c.language for c in cells)),
                             tuple(dict.fromkeys(c.seed for c in cells)), config.preset, str(store.path)))
    counts = {"computed": 0, "others": 0}
    failures: list[CellFailure] = list(unusable)
    heartbeat = _Heartbeat(store)
    interrupted = True
    # models made here (pre-trained, say) are made once per run before their cells: in the local
    # executor's workers beside other cells when it has several, else in this process first
    preparations = _preparations(pending, config)
    if hasattr(executor, "expect"):
        executor.expect(len(pending), config.train.steps)
    parallel = (bool(preparations) and len(pending) > 1 and hasattr(executor, "run_with_preparation")
                and executor.parallel())
    not_prepared: list[BaseException] = []
    try:
        if not parallel:
            prepare_models(((p.model.spec, p.model_options) for p in pending), config, registry, progress,
                           tracking=tracking, run_id=run_id)
        heartbeat.start()
        _compute_cells(pending, config, store, executor, progress, heartbeat, counts, failures, runtime, run_id,
                       warn_once, preparations if parallel else [], not_prepared, tracking)
        interrupted = False
    finally:
        tracking.emit(RunFinished(run_id, counts["computed"], tuple(f.cell.label() for f in failures),
                                  time.perf_counter() - start, interrupted))
        tracking.close(timeout=10 if interrupted else None)
    if not_prepared:  # every cell that could be computed is stored; now say what stopped the rest
        first = not_prepared[0]
        raise first if isinstance(first, BenchError) else BenchError(
            f"making a model failed: {type(first).__name__}: {first}", "see the traceback above; fix it and run again")
    return RunSummary(len(plan.cells), len(done), counts["computed"], time.perf_counter() - start, tuple(failures),
                      skipped_failed, counts["others"])


def _preparations(pending: list[PlannedCell], config: RunConfig) -> list:
    """One :class:`PrepareTask` per model of ``pending`` that has a ``prepare`` (first cell's options)."""
    from harness.run.executors.local import PrepareTask

    seen: dict[str, PrepareTask] = {}
    for planned in pending:
        spec = planned.model.spec
        if spec.prepare is not None and planned.cell.model not in seen:
            seen[planned.cell.model] = PrepareTask(config, planned.cell.model, dict(planned.model_options))
    return list(seen.values())


def _stored_scores(store: ResultStore, plan: Plan, done: set[str], config: RunConfig) -> dict:
    """The test score (the run's first metric) of each planned cell stored already, for the live matrix."""
    if not done:
        return {}
    metric = config.metrics[0]
    by_key = {c.key: c.cell for c in plan.cells}
    return {by_key[c.key]: c.metrics.get("test", {}).get(metric) for c in store.cells(done) if c.key in by_key}


def _compute_cells(pending: list[PlannedCell], config: RunConfig, store: ResultStore, executor: Executor,
                   progress: Progress | None, heartbeat: _Heartbeat, counts: dict, failures: list[CellFailure],
                   runtime: str, run_id: str, warn_once: WarnOnce, preparations: list | None = None,
                   not_prepared: list | None = None, tracking: TrackerSet | None = None) -> None:
    """Hand the pending cells to the executor and store each result or failure as it comes back;
    with ``preparations``, the executor makes those models too, beside the cells of ready ones
    (``not_prepared`` collects what failed)."""
    from contextlib import ExitStack

    from harness.tracking import ModelPrepared

    metric = config.metrics[0]

    def tasks():
        for planned in pending:
            if not store.claim(planned.key):
                counts["others"] += 1
                continue
            with heartbeat.lock:
                heartbeat.held.add(planned.key)
            if progress:
                progress.cell_started(planned.cell)
            # a swept cell is computed with the configuration of its point (which plans to its key)
            yield CellTask(config_at(config, planned.point) if planned.point else config, planned.cell, planned.key,
                           run_id)

    def on_result(result: CellResult | CellFailure) -> None:
        c = result.cell
        for who, line in result.warnings:  # a failing tracker where the cell ran: said once per run
            warn_once(who, line)
        if isinstance(result, CellResult):
            try:  # one transaction: stored whole or not at all (its output files first)
                if result.blobs:
                    outputs = OutputStore.beside(store.path)
                    for blob in result.blobs:
                        outputs.put(blob)
                store.put(result.key, model=c.model, dataset=c.dataset, language=c.language, seed=c.seed,
                          metrics=result.metrics, record=result.record, hypotheses=result.hypotheses,
                          duration_s=result.duration_s)
            except Exception as exc:  # a store problem fails this cell, never the matrix
                result = CellFailure(result.key, c, "error",
                                     f"storing the result in {store.path} failed: {type(exc).__name__}: {exc}",
                                     traceback.format_exc())
        if isinstance(result, CellResult):
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
            ok = isinstance(result, CellResult)
            progress.cell_finished(c, result.metrics.get("test", {}).get(metric) if ok else None,
                                   result.duration_s if ok else None, failed=not ok)
            progress.finish_cell(line)

    activities = ExitStack()

    def on_prepared(model: str, outcome) -> None:
        if isinstance(outcome, BaseException):
            if not_prepared is not None:
                not_prepared.append(outcome)
            if progress:
                progress.log(f"FAILED to make model {model}: {outcome}; its cells are left for a later run")
            return
        if progress and outcome.get("prepared_now"):
            progress.log(f"made {model}: {outcome.get('summary', '')} ({outcome.get('seconds', 0):.0f} s)")
        if tracking is not None and tracking.active:
            tracking.emit(ModelPrepared(run_id, model, float(outcome.get("seconds", 0.0) or 0.0), dict(outcome)))

    def release(task: CellTask) -> None:
        with heartbeat.lock:
            heartbeat.held.discard(task.key)
        store.release(task.key)

    try:
        if preparations:
            names = ", ".join(p.model for p in preparations)
            if progress:
                progress.log(f"making {len(preparations)} model(s) in the workers beside the other cells: {names}")
                if hasattr(progress, "activity"):
                    activities.enter_context(progress.activity(f"making model(s) {names} in the workers"))
            executor.run_with_preparation(preparations, tasks(), on_result, progress, on_prepared, release)
        else:
            executor.run(tasks(), on_result, progress)
    finally:
        activities.close()
        heartbeat.stop()
        with heartbeat.lock:
            for key in heartbeat.held:  # interrupted: let the next run take these at once
                store.release(key)


def check_runtime(config: RunConfig, registry: Registry, here: bool = False) -> Executor:
    """Check the runtime settings (device, precision, executor and its options, trackers) before any
    work, pre-training included: a setting that cannot work fails at once with one message
    instead of failing every cell. The device is checked on this machine when cells run here
    (the ``local`` executor) or ``here`` is set (models are pre-trained in this process); other
    executors' cells run on their own machines. Returns the executor ``config`` asks for."""
    if here or config.executor == "local":
        device = resolve_device(config.runtime.device)
        resolve_precision(config.runtime.precision, device)
        import torch

        if config.runtime.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise BenchError("run.precision='bf16' was asked for but this GPU does not support bf16",
                             "use precision auto (fp16 with loss scaling there) or fp32")
    resolve_trackers(config, registry)  # unknown names, missing packages, bad options: before any work
    spec = registry.executor(config.executor).spec
    return spec.create(dict(config.executor_options.get(config.executor, {})), config)
