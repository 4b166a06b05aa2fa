"""Weights & Biases, offline by default: one W&B run per cell, grouped by ``bench run``.

A cell's run (``job_type`` ``cell``, named by its label, ``group`` the bench run's id, its
identity as the config) logs ``train/loss`` and ``train/lr`` every 25 updates (step: the
update) and ``train/dev_cer``; at its end the summary holds ``dev/<metric>``, ``test/<metric>``
and ``cell/seconds`` (a failed cell's run exits with code 1 and ``failure`` in its summary). A
model pre-trained here gets a run of its loss (``job_type`` ``pretraining``); ``bench report``
logs its files as an artifact of type ``report``. ``mode = "offline"`` (the default) needs no
network or account: runs land in ``<dir>/wandb/offline-run-*`` for ``wandb sync`` later.
Default ``dir``: ``<the store's folder>/tracking/wandb``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api import Tracker, TrackerRequest
from harness.tracking import (CellFailed, CellFinished, CellStarted, DevEvaluated, ModelPrepared, PretrainingUpdate,
                              ReportWritten, TrainingUpdate)


class WandbTracker(Tracker):
    def __init__(self, request: TrackerRequest) -> None:
        import wandb  # noqa: F401  (fails here, at creation, when the package is missing)

        self.request = request
        options = request.options
        self.dir = Path(options.get("dir") or request.directory).expanduser()
        self.run = None
        self.pretraining: dict[str, Any] = {}

    def _init(self, name: str, job_type: str, group: str, config: dict | None = None):
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        options = self.request.options
        return wandb.init(project=options.get("project") or "bench", entity=options.get("entity") or None,
                          dir=str(self.dir), mode=options.get("mode") or "offline", group=group or None,
                          job_type=job_type, name=name, config=config or {}, reinit="create_new",
                          settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))

    def handle(self, event: Any) -> None:
        if isinstance(event, CellStarted):
            self.run = self._init(event.cell.label(), "cell", event.run_id,
                                  {**dict(event.identity), "bench_key": event.key})
        elif isinstance(event, TrainingUpdate) and self.run is not None:
            self.run.log({"train/loss": event.loss, "train/lr": event.lr}, step=event.update)
        elif isinstance(event, DevEvaluated) and self.run is not None:
            self.run.log({"train/dev_cer": event.cer}, step=event.update)
        elif isinstance(event, CellFinished) and self.run is not None:
            summary = {f"{split}/{metric}": value for split, scores in event.metrics.items()
                       for metric, value in scores.items()}
            self.run.summary.update({**summary, "cell/seconds": event.seconds})
            self.run.finish()
            self.run = None
        elif isinstance(event, CellFailed):
            if self.run is None:
                self.run = self._init(event.cell.label(), "cell", event.run_id, {"bench_key": event.key})
            self.run.summary.update({"failure": f"{event.kind}: {event.message}"})
            self.run.finish(exit_code=1)
            self.run = None
        elif isinstance(event, PretrainingUpdate):
            run = self.pretraining.get(event.model)
            if run is None:
                run = self.pretraining[event.model] = self._init(f"pretrain {event.model}", "pretraining",
                                                                 event.run_id, {"model": event.model})
            run.log({"train/loss": event.loss, "train/lr": event.lr}, step=event.update)
        elif isinstance(event, ModelPrepared):
            run = self.pretraining.pop(event.model, None)
            if run is not None:
                run.summary.update({"seconds": event.seconds})
                run.finish()
        elif isinstance(event, ReportWritten):
            import wandb

            run = self._init("report", "report", event.run_id, {"cells": event.cells})
            artifact = wandb.Artifact(f"report-{event.run_id}", type="report")
            for kind, path in sorted(event.paths.items()):
                if Path(path).is_file():
                    artifact.add_file(str(path))
            run.log_artifact(artifact)
            run.finish()

    def close(self) -> None:
        for run in [self.run, *self.pretraining.values()]:
            if run is not None:
                run.finish(exit_code=1)
        self.run = None
        self.pretraining.clear()
