"""TensorBoard: event files, one folder per cell and per pre-trained model.

``<logdir>/MODEL/DATASET-LANGUAGE/seedN-KEY8`` (:func:`harness.tracking.cell_path`) holds a
cell's ``train/loss`` and ``train/lr`` every 25 updates, ``train/dev_cer`` when dev is scored
during training, and at its end ``dev/<metric>`` and ``test/<metric>`` (at the last update's
step), ``cell/seconds`` and its identity as text; ``<logdir>/pretraining/MODEL`` the loss of a
model pre-trained here; ``<logdir>/report`` the matrix ``bench report`` wrote. Default
``logdir``: ``<the store's folder>/tracking/tensorboard``; ``tensorboard --logdir`` that folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.api import Tracker, TrackerRequest
from harness.tracking import (CellFailed, CellFinished, CellStarted, DevEvaluated, PretrainingUpdate, ReportWritten,
                              TrainingUpdate, cell_path)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "_"


class TensorBoardTracker(Tracker):
    def __init__(self, request: TrackerRequest) -> None:
        self.root = Path(request.options.get("logdir") or request.directory).expanduser()
        self.writers: dict[str, Any] = {}

    def _writer(self, folder: str):
        writer = self.writers.get(folder)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            writer = self.writers[folder] = SummaryWriter(log_dir=str(self.root / folder), flush_secs=10)
        return writer

    def handle(self, event: Any) -> None:
        if isinstance(event, CellStarted):
            text = json.dumps(event.identity, indent=1, sort_keys=True, default=str)
            self._writer(cell_path(event.cell, event.key)).add_text("identity", f"```\n{text}\n```", 0)
        elif isinstance(event, TrainingUpdate):
            writer = self._writer(cell_path(event.cell, event.key))
            writer.add_scalar("train/loss", event.loss, event.update)
            writer.add_scalar("train/lr", event.lr, event.update)
        elif isinstance(event, DevEvaluated):
            self._writer(cell_path(event.cell, event.key)).add_scalar("train/dev_cer", event.cer, event.update)
        elif isinstance(event, CellFinished):
            writer = self._writer(cell_path(event.cell, event.key))
            step = event.record.train.updates or 0
            for split, scores in event.metrics.items():
                for metric, value in scores.items():
                    writer.add_scalar(f"{split}/{metric}", value, step)
            writer.add_scalar("cell/seconds", event.seconds, step)
            writer.flush()
        elif isinstance(event, CellFailed):
            writer = self._writer(cell_path(event.cell, event.key))
            writer.add_text("failure", f"{event.kind}: {event.message}", 0)
            writer.flush()
        elif isinstance(event, PretrainingUpdate):
            writer = self._writer(f"pretraining/{_safe(event.model)}")
            writer.add_scalar("train/loss", event.loss, event.update)
            writer.add_scalar("train/lr", event.lr, event.update)
        elif isinstance(event, ReportWritten):
            markdown = event.paths.get("md")
            if markdown is not None and Path(markdown).is_file():
                self._writer("report").add_text("matrix", Path(markdown).read_text(encoding="utf-8"), 0)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
