"""MLflow: one run per cell, nested under one run per ``bench run``, in a local SQLite store by default.

A cell's run (named by its label, tagged ``bench.key``, ``bench.run_id``, ``bench.model``, ...)
has its identity as parameters (flattened: ``model.options.hidden``), ``train/loss``,
``train/lr`` (every 25 updates) and ``train/dev_cer``, then ``dev/<metric>``, ``test/<metric>``
and ``cell/seconds``, and its record as the artifact ``record.json``; a failed cell's run ends
FAILED with the message in the tag ``bench.failure``. A model pre-trained here gets a run of its
loss; ``bench report`` logs its files as the artifacts of a run named ``report``. Default store:
``sqlite:///<the store's folder>/tracking/mlflow/mlflow.db`` (``mlflow ui --backend-store-uri`` it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from harness.api import Tracker, TrackerRequest
from harness.tracking import (CellFailed, CellFinished, CellStarted, DevEvaluated, ModelPrepared, PretrainingUpdate,
                              ReportWritten, RunFinished, RunStarted, TrainingUpdate, flat_identity)

#: MLflow's limits on a parameter's key and value
KEY_LIMIT, VALUE_LIMIT = 250, 6000
_INIT = threading.Lock()


def tracking_uri(request: TrackerRequest) -> str:
    uri = request.options.get("tracking_uri") or ""
    if uri:
        return uri
    request.directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(request.directory / 'mlflow.db').absolute()}"


class MLflowTracker(Tracker):
    def __init__(self, request: TrackerRequest) -> None:
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # the store's first use logs its table creation at INFO (after import:
            logging.getLogger(name).setLevel(logging.WARNING)  # importing mlflow sets its own levels)

        self.request = request
        self.client = MlflowClient(tracking_uri=tracking_uri(request))
        with _INIT:  # made here (synchronously): the driver creates the store before any cell starts
            self.experiment_id = self._experiment()
        self.run_id: str | None = None  # this cell's MLflow run, or the bench run's
        self.pretraining: dict[str, str] = {}

    def _experiment(self) -> str:
        name = self.request.options.get("experiment") or "bench"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = self.request.options.get("artifact_location") or ""
        if not location and not self.request.options.get("tracking_uri"):
            location = str((self.request.directory / "artifacts").absolute())
        try:
            return self.client.create_experiment(name, artifact_location=location or None)
        except Exception:  # made meanwhile by another process
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _parent(self, bench_run: str) -> str | None:
        runs = self.client.search_runs([self.experiment_id], max_results=1,
                                       filter_string=f"tags.`bench.run_id` = '{bench_run}' and tags.`bench.kind` = 'run'")
        return runs[0].info.run_id if runs else None

    def _metrics(self, run_id: str, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def handle(self, event: Any) -> None:
        if isinstance(event, CellStarted):
            self._start_cell(event)
        elif isinstance(event, TrainingUpdate) and self.run_id:
            self._metrics(self.run_id, {"train/loss": event.loss, "train/lr": event.lr}, event.update)
        elif isinstance(event, DevEvaluated) and self.run_id:
            self._metrics(self.run_id, {"train/dev_cer": event.cer}, event.update)
        elif isinstance(event, CellFinished) and self.run_id:
            values = {f"{split}/{metric}": value for split, scores in event.metrics.items()
                      for metric, value in scores.items()}
            self._metrics(self.run_id, {**values, "cell/seconds": event.seconds}, event.record.train.updates or 0)
            self.client.log_text(self.run_id, json.dumps(event.record.to_json(), indent=1, default=str), "record.json")
            self.client.set_terminated(self.run_id, "FINISHED")
            self.run_id = None
        elif isinstance(event, CellFailed):
            if self.run_id is None:  # failed while planning: a run says so all the same
                self._start_cell(CellStarted(event.run_id, event.cell, event.key, {}))
            self.client.set_tag(self.run_id, "bench.failure", f"{event.kind}: {event.message}"[:5000])
            self.client.set_terminated(self.run_id, "KILLED" if event.kind == "interrupted" else "FAILED")
            self.run_id = None
        elif isinstance(event, RunStarted):
            run = self.client.create_run(self.experiment_id, run_name=f"bench run {event.run_id}",
                                         tags={"bench.run_id": event.run_id, "bench.kind": "run"})
            self.run_id = run.info.run_id
            self._params(self.run_id, {"planned": event.planned, "to_compute": event.to_compute,
                                       "models": ",".join(event.models), "languages": ",".join(event.languages),
                                       "seeds": ",".join(map(str, event.seeds)), "preset": event.preset,
                                       "store": event.store})
        elif isinstance(event, PretrainingUpdate):
            run_id = self.pretraining.get(event.model)
            if run_id is None:
                tags = {"bench.run_id": event.run_id, "bench.kind": "pretraining", "bench.model": event.model}
                if self.run_id:
                    tags["mlflow.parentRunId"] = self.run_id
                run_id = self.pretraining[event.model] = self.client.create_run(
                    self.experiment_id, run_name=f"pretrain {event.model}", tags=tags).info.run_id
            self._metrics(run_id, {"train/loss": event.loss, "train/lr": event.lr}, event.update)
        elif isinstance(event, ModelPrepared):
            run_id = self.pretraining.pop(event.model, None)
            if run_id is not None:
                self._metrics(run_id, {"seconds": event.seconds}, 0)
                self.client.set_terminated(run_id, "FINISHED")
        elif isinstance(event, RunFinished) and self.run_id:
            self._metrics(self.run_id, {"cells_computed": event.computed, "cells_failed": len(event.failed),
                                        "seconds": event.seconds}, 0)
            self._end_orphans(event)
            self.client.set_terminated(self.run_id, "KILLED" if event.interrupted else "FINISHED")
            self.run_id = None
        elif isinstance(event, ReportWritten):
            run = self.client.create_run(self.experiment_id, run_name="report",
                                         tags={"bench.kind": "report", "bench.run_id": event.run_id})
            self._params(run.info.run_id, {"cells": event.cells})
            for kind, path in sorted(event.paths.items()):
                if Path(path).is_file():
                    self.client.log_artifact(run.info.run_id, str(path))
            self.client.set_terminated(run.info.run_id, "FINISHED")

    def _params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:KEY_LIMIT], str(v)[:VALUE_LIMIT]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(run_id, params=items[i:i + 100])

    def _start_cell(self, event: CellStarted) -> None:
        cell = event.cell
        tags = {"bench.key": event.key, "bench.run_id": event.run_id, "bench.kind": "cell", "bench.model": cell.model,
                "bench.dataset": cell.dataset, "bench.language": cell.language, "bench.seed": str(cell.seed),
                "bench.protocol": cell.protocol}
        parent = self._parent(event.run_id) if event.run_id else None
        if parent:
            tags["mlflow.parentRunId"] = parent
        self.run_id = self.client.create_run(self.experiment_id, run_name=cell.label(), tags=tags).info.run_id
        if event.identity:
            self._params(self.run_id, flat_identity(event.identity))

    def _end_orphans(self, event: RunFinished) -> None:
        """Cell runs of this bench run still open (their process died): ended FAILED."""
        runs = self.client.search_runs([self.experiment_id], max_results=1000, filter_string=(
            f"tags.`bench.run_id` = '{event.run_id}' and tags.`bench.kind` = 'cell' and attributes.status = 'RUNNING'"))
        for run in runs:
            self.client.set_terminated(run.info.run_id, "KILLED" if event.interrupted else "FAILED")

    def close(self) -> None:
        for run_id in [self.run_id, *self.pretraining.values()]:
            if run_id:
                self.client.set_terminated(run_id, "KILLED")
        self.run_id = None
        self.pretraining.clear()
