"""One cell as a unit of work any executor can run, in this process or on another machine.

A :class:`CellTask` holds the run's configuration and the cell's key: small, picklable, and
enough to redo the planning where it runs (the worker checks that it arrives at the same key,
which catches a worker running different code or plugins). :func:`compute_cell` loads the
data, hands the built model and the splits to the cell's protocol (retrying with smaller
micro-batches when memory runs out), scores the hypotheses it returns with the run's metrics,
and returns a :class:`CellResult` or, for any error, a :class:`CellFailure` — it never raises
for a failing cell, so one bad cell does not stop a matrix.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.api import CellOutcome, DatasetSplits, ProtocolRequest
from harness.plan.config import RunConfig
from harness.errors import BenchError
from harness.plan.cells import Cell
from harness.plan.planner import PlannedCell, checkpoint_path, data_request, model_cache_dir, plan_run
from harness.plugins import Registry, process_registry
from harness.run.progress import Progress
from harness.run.tracking import TrackerSet
from harness.tracking import CellFailed, CellFinished, CellStarted, DevEvaluated, TrainingUpdate
from harness.run.provenance import git_revision, machine, package_versions
from harness.store.outputs import Blob, encode_genders, encode_log_probs, encode_text
from harness.store.record import CellRecord, SplitFacts, StoredFile, TrainFacts
from harness.engine.scoring import score_splits


@dataclass(frozen=True)
class CellTask:
    config: RunConfig
    cell: Cell
    key: str
    #: the ``bench run`` that submitted it (experiment trackers group a run's cells by it)
    run_id: str = ""

    def with_runtime(self, **changes: Any) -> CellTask:
        """The same cell computed differently (device, threads): runtime settings are not in the key."""
        runtime = dataclasses.replace(self.config.runtime, **changes)
        return dataclasses.replace(self, config=dataclasses.replace(self.config, runtime=runtime))


@dataclass(frozen=True)
class CellResult:
    key: str
    cell: Cell
    metrics: dict[str, dict[str, float]]
    record: CellRecord
    hypotheses: dict[str, list[tuple[str, str, str]]]
    duration_s: float
    #: files for the outputs folder beside the store (log-probabilities, training text), which
    #: the record names: written before the record is stored
    blobs: tuple[Blob, ...] = ()
    #: ``(who, line)`` warnings from where the cell ran (a failing experiment tracker), which the
    #: driver prints once per ``who`` for the whole run
    warnings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CellFailure:
    key: str
    cell: Cell
    #: "user" (a BenchError: data or settings), "oom" (out of memory after every retry), "error"
    kind: str
    message: str
    #: the hint of a user error, or the traceback of anything else
    detail: str
    #: as :attr:`CellResult.warnings`
    warnings: tuple[tuple[str, str], ...] = ()


class _DataMemo:
    """The last language's splits: a worker computing many cells loads each language once."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.data: DatasetSplits | None = None

    def load(self, planned: PlannedCell, config: RunConfig) -> DatasetSplits:
        c = planned.cell
        key = (c.dataset, c.language, c.seed, repr(sorted(planned.dataset_options.items())), str(config.cache_dir))
        if self.key != key:
            self.key, self.data = None, None  # free the previous language first
            self.data = planned.dataset.spec.load(data_request(config, c, planned.dataset_options))
            self.key = key
        return self.data


_MEMO = _DataMemo()


def _plan_one(task: CellTask, registry: Registry) -> tuple[PlannedCell, tuple]:
    c = task.cell
    config = dataclasses.replace(task.config, models=(c.model,), datasets=(c.dataset,), langs=(c.language,),
                                 seeds=(c.seed,), protocols=(c.protocol,))
    plan = plan_run(config, registry)
    found = [p for p in plan.cells if p.key == task.key]
    if not found:
        raise BenchError(f"cell {c.label()} plans to a different key here than where it was submitted",
                         "the worker runs other code or plugins than the submitting machine: install the same "
                         "bench version and plugins on every worker")
    return found[0], plan.metrics


def merge_skipped(*parts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Sum skip counts by split and reason (the dataset's and the protocol's)."""
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        for split, reasons in part.items():
            for reason, count in reasons.items():
                if count:
                    out.setdefault(split, {})[reason] = out.get(split, {}).get(reason, 0) + int(count)
    return out


def build_record(planned: PlannedCell, outcome: CellOutcome, data: DatasetSplits, config: RunConfig) -> CellRecord:
    info = dict(outcome.train_info)
    return CellRecord(
        identity=planned.identity,
        seed=planned.cell.seed,
        model_origin=str(planned.model.origin),
        dataset_origin=str(planned.dataset.origin),
        protocol_origin=str(planned.protocol.origin),
        data=dict(data.info),
        skipped=merge_skipped(data.skipped, outcome.skipped),
        vocabulary=tuple(outcome.vocabulary),
        train=TrainFacts.from_json(info),
        eval={n: SplitFacts(r.utterances, r.seconds) for n, r in outcome.splits.items()},
        runtime=dataclasses.asdict(config.runtime),
        preset=config.preset,
        packages=package_versions(),
        git_revision=git_revision(),
        machine=machine(info.get("device", "cpu")),
    )


class CellOutOfMemory(RuntimeError):
    """Out of memory after every retry: the message names the settings to lower."""


def out_of_memory_message(exc: BaseException, train, runtime, retries: int, configured) -> str:
    """One paragraph for a cell that ran out of memory at its smallest micro-batch: where (device,
    training or decoding), at which batching, and which setting to lower (``configured``: the
    run's :class:`RunConfig`, before the retries halved its batches)."""
    import traceback as tb

    import torch

    from harness.engine.device import resolve_device

    decoding = any(frame.name == "evaluate" for frame in tb.extract_tb(exc.__traceback__))
    where = "decoding" if decoding else "training"
    try:
        device = resolve_device(runtime.device)
    except BenchError:
        device = None
    place = str(device) if device is not None else runtime.device
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        place += f" ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    batching = (f"{train.batch_seconds:g} s micro-batches x {train.grad_accum}" if not decoding
                else f"{runtime.eval_batch_seconds:g} s evaluation batches")
    setting = ("run.eval_batch_seconds" if decoding else "train.batch_seconds")
    now = configured.runtime.eval_batch_seconds if decoding else configured.train.batch_seconds
    advice = (f"lower run.eval_batch_seconds (now {now:g})" if decoding else
              f"lower train.batch_seconds (now {now:g}; raise train.grad_accum by the same factor to keep the "
              "effective batch)")
    return (f"out of memory on {place} while {where} with {batching}, after {retries} retr"
            f"{'y' if retries == 1 else 'ies'} (run.oom_retries = {runtime.oom_retries}): {cause} -- "
            f"{advice}, or raise run.oom_retries; {setting} is what decides the memory a cell needs")


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def compute_cell(task: CellTask, progress: Progress | None = None,
                 registry: Registry | None = None) -> CellResult | CellFailure:
    """Compute one cell; every error comes back as a :class:`CellFailure`.

    ``registry``: the plugins to plan the cell with (default: this process's, found once).
    """
    start = time.perf_counter()
    registry = registry or process_registry()
    tracking = _cell_trackers(task, registry)
    try:
        outcome: CellResult | CellFailure = _compute(task, progress, start, registry, tracking)
    except BenchError as exc:
        outcome = CellFailure(task.key, task.cell, "user", exc.message, exc.hint or "")
    except (KeyboardInterrupt, SystemExit):
        tracking.emit(CellFailed(task.run_id, task.cell, task.key, "interrupted", "interrupted",
                                 time.perf_counter() - start))
        tracking.close(timeout=10)
        raise
    except Exception as exc:  # a bug in bench or a plugin: keep the traceback for the report
        kind = "oom" if is_out_of_memory(exc) else "error"
        outcome = CellFailure(task.key, task.cell, kind, f"{type(exc).__name__}: {exc}", traceback.format_exc())
    if isinstance(outcome, CellFailure) and outcome.kind == "oom":  # the next cell in this process gets the memory back
        _free_memory()
    if not tracking.active and not tracking.warnings:
        return outcome
    seconds = time.perf_counter() - start
    if isinstance(outcome, CellResult):
        tracking.emit(CellFinished(task.run_id, task.cell, task.key, outcome.metrics, outcome.record, seconds))
    else:
        tracking.emit(CellFailed(task.run_id, task.cell, task.key, outcome.kind, outcome.message, seconds))
    warnings = tracking.close()
    return dataclasses.replace(outcome, warnings=tuple(warnings)) if warnings else outcome


def _cell_trackers(task: CellTask, registry: Registry) -> TrackerSet:
    """The run's trackers, one instance each for this cell, made where it is computed."""
    if not task.config.trackers:
        return TrackerSet.empty()
    return TrackerSet.open(task.config, registry, "cell", task.run_id, task.cell, task.key)


def _listeners(task: CellTask, tracking: TrackerSet) -> dict[str, Any]:
    """``on_log``/``on_dev`` for the protocol's request: the loop's events, to the trackers."""
    if not tracking.active:
        return {}
    cell, key, run_id = task.cell, task.key, task.run_id

    def on_log(log) -> None:
        tracking.emit(TrainingUpdate(run_id, cell, key, log.update, log.total, log.loss, log.lr, log.seconds))

    def on_dev(update: int, score: float) -> None:
        tracking.emit(DevEvaluated(run_id, cell, key, update, score))

    return {"on_log": on_log, "on_dev": on_dev}


def _compute(task: CellTask, progress: Progress | None, start: float, registry: Registry,
             tracking: TrackerSet | None = None) -> CellResult:
    config = task.config
    planned, metrics = _plan_one(task, registry)
    tracking = tracking or TrackerSet.empty()
    tracking.emit(CellStarted(task.run_id, task.cell, task.key, planned.identity))
    listeners = _listeners(task, tracking)
    data = _MEMO.load(planned, config)
    train, runtime = config.train, config.runtime
    checkpoint = checkpoint_path(config, task.key)
    retries = 0
    while True:
        request = ProtocolRequest(
            build_model=planned.model.spec.build, data=data, language=task.cell.language, seed=task.cell.seed,
            train=train, runtime=runtime, options=planned.protocol_options, model_options=planned.model_options,
            progress=progress, checkpoint=checkpoint, model_cache_dir=model_cache_dir(config), **listeners,
            feature_store=config.cache_dir / "features" if runtime.feature_cache != "off" else None,
        )
        try:
            outcome = planned.protocol.spec.run(request)
            break
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if retries >= runtime.oom_retries:
                raise CellOutOfMemory(out_of_memory_message(exc, train, runtime, retries, config)) from exc
            # the same effective batch in smaller pieces; a checkpoint of the old batching no longer fits
            retries += 1
            train = dataclasses.replace(train, batch_seconds=train.batch_seconds / 2, grad_accum=train.grad_accum * 2)
            runtime = dataclasses.replace(runtime, eval_batch_seconds=runtime.eval_batch_seconds / 2)
            checkpoint.unlink(missing_ok=True)
            if progress:
                progress.log(f"out of memory in {task.cell.label()}: retrying with {train.batch_seconds:g} s "
                             f"micro-batches x {train.grad_accum} (retry {retries} of {runtime.oom_retries})")
        # outside the except block: there the exception's traceback still holds the failed attempt's
        # tensors (model, optimizer state, activations), and nothing could be given back
        _free_memory()
    if "test" not in outcome.splits:
        raise BenchError(f"protocol {task.cell.protocol!r} returned no test hypotheses for {task.cell.label()}",
                         "a protocol's run() must decode the test split (CellOutcome.splits['test'])")
    hypotheses = {name: list(r.hypotheses) for name, r in outcome.splits.items()}
    scores, versions, outputs = score_splits(metrics, hypotheses)
    record = dataclasses.replace(build_record(planned, outcome, data, config), metric_versions=versions,
                                 outputs=outputs)
    record, blobs = _kept_outputs(record, outcome, data, task.cell.language)
    record, gender_blobs = _kept_genders(record, outcome, data)
    blobs = (*blobs, *gender_blobs)
    if retries:
        record = dataclasses.replace(record, oom_retries=retries, effective_batching={
            "batch_seconds": train.batch_seconds, "grad_accum": train.grad_accum,
            "eval_batch_seconds": runtime.eval_batch_seconds})
    return CellResult(task.key, task.cell, metrics=scores, record=record, hypotheses=hypotheses,
                      duration_s=time.perf_counter() - start, blobs=blobs)


def _kept_outputs(record: CellRecord, outcome: CellOutcome, data: DatasetSplits,
                  language: str) -> tuple[CellRecord, tuple[Blob, ...]]:
    """The files a cell keeps beside the store (its splits' log-probabilities, when the protocol
    kept them, and its normalised training text), and its record naming them."""
    from harness.engine.text import normalize

    blobs: list[Blob] = []
    files: dict[str, StoredFile] = {}
    for name, split in outcome.splits.items():
        if split.log_probs is None:
            continue
        blob = encode_log_probs(split.log_probs)
        blobs.append(blob)
        files[name] = StoredFile(blob.sha256, len(blob.content), blob.suffix, len(split.log_probs),
                                 sum(int(a.shape[0]) for a in split.log_probs.values()))
    if not files:
        return record, ()
    text = encode_text([normalize(u.text, language) for u in data.train])
    blobs.append(text)
    return (dataclasses.replace(record, log_probs=files,
                                train_text=StoredFile(text.sha256, len(text.content), text.suffix, len(data.train))),
            tuple(blobs))


def _kept_genders(record: CellRecord, outcome: CellOutcome, data: DatasetSplits) -> tuple[CellRecord, tuple[Blob, ...]]:
    """Per evaluated split whose dataset records speakers' genders, a file of each evaluated
    utterance's gender (the same for every cell of a language: stored once), and the record
    naming it; nothing where no gender is recorded."""
    blobs: list[Blob] = []
    files: dict[str, StoredFile] = {}
    for name, split in outcome.splits.items():
        known = {u.id: u.gender for u in getattr(data, name, ()) if getattr(u, "gender", "")}
        if not known:
            continue
        genders = {utt: known.get(utt, "") for utt, _, _ in split.hypotheses}
        if not any(genders.values()):
            continue
        blob = encode_genders(genders)
        blobs.append(blob)
        files[name] = StoredFile(blob.sha256, len(blob.content), blob.suffix, len(genders))
    if not files:
        return record, ()
    return dataclasses.replace(record, genders=files), tuple(blobs)


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
