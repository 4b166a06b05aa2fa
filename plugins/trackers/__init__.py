"""The built-in experiment trackers: TensorBoard, MLflow and Weights & Biases (offline by default).

Each needs an optional extra (``pip install 'bench[tensorboard]'``, ``'bench[mlflow]'``,
``'bench[wandb]'``; ``'bench[tracking]'`` for all three) and is imported only when a run names
it in ``run.trackers``. They register exactly as a third-party tracker would
(``bench_register_trackers``); see docs/tracking.md.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from harness.api import Tracker, TrackerRequest, TrackerSpec
from harness.errors import BenchError
from harness.hookspecs import hookimpl


def _needs(tracker: str, extra: str, *modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchError(f"tracker {tracker!r} needs the package(s) {', '.join(missing)}, which are not installed",
                         f"pip install 'bench[{extra}]' (or leave {tracker!r} out of run.trackers)")


def _tensorboard(request: TrackerRequest) -> Tracker:
    from .tensorboard_tracker import TensorBoardTracker

    return TensorBoardTracker(request)


def _mlflow(request: TrackerRequest) -> Tracker:
    from .mlflow_tracker import MLflowTracker

    return MLflowTracker(request)


def _wandb(request: TrackerRequest) -> Tracker:
    from .wandb_tracker import WandbTracker

    return WandbTracker(request)


def _check_mlflow(options: Mapping[str, Any]) -> None:
    uri = options["tracking_uri"]
    if uri and "://" not in uri:
        raise BenchError(f"[trackers.mlflow] tracking_uri {uri!r} is not a URI",
                         "e.g. tracking_uri = \"sqlite:////abs/path/mlflow.db\" or \"http://host:5000\"; "
                         "empty: a SQLite store under the results store's folder")
    if not uri or uri.startswith("sqlite:"):
        _needs("mlflow", "mlflow", "sqlalchemy", "alembic")


def _check_wandb(options: Mapping[str, Any]) -> None:
    if options["mode"] not in ("offline", "online", "disabled"):
        raise BenchError(f"[trackers.wandb] mode must be \"offline\", \"online\" or \"disabled\", got {options['mode']!r}",
                         "offline (the default) writes runs to sync later with `wandb sync`")


@hookimpl
def bench_register_trackers(register) -> None:
    register(TrackerSpec(
        "tensorboard", _tensorboard, "TensorBoard event files, one folder per cell (loss, learning rate, dev and "
        "test scores) and per pre-trained model", defaults={"logdir": ""},
        check=lambda: _needs("tensorboard", "tensorboard", "tensorboard"), extra="tensorboard"))
    register(TrackerSpec(
        "mlflow", _mlflow, "MLflow: one run per cell (params: its identity; metrics; its record as an artifact), "
        "nested under one run per bench run; bench report's files as artifacts",
        defaults={"tracking_uri": "", "experiment": "bench", "artifact_location": ""},
        check=lambda: _needs("mlflow", "mlflow", "mlflow"), check_options=_check_mlflow, extra="mlflow"))
    register(TrackerSpec(
        "wandb", _wandb, "Weights & Biases, offline by default: one run per cell grouped by bench run, per "
        "pre-trained model, and bench report's files as an artifact",
        defaults={"project": "bench", "entity": "", "mode": "offline", "dir": ""},
        check=lambda: _needs("wandb", "wandb", "wandb"), check_options=_check_wandb, extra="wandb"))
