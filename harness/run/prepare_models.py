"""Models that have to be made before cells can use them (pre-trained here, for example).

A model plugin marks such a model with ``ModelSpec.prepare``. ``bench run`` prepares the
models of its pending cells in the driver, before handing any cell to an executor, so workers
only load what is already in the cache; ``bench pretrain`` does the same on request.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from typing import Any

from harness.api import DatasetSplits, ModelSpec, PrepareContext
from harness.plan.planner import dataset_request, model_cache_dir
from harness.plan.config import RunConfig
from harness.plugins import Registry


def prepare_context(config: RunConfig, registry: Registry, progress=None, force: bool = False) -> PrepareContext:
    def load_dataset(name: str, language: str, seed: int, options: Mapping[str, Any]) -> DatasetSplits:
        spec = registry.dataset(name).spec
        return spec.load(dataset_request(config, name, language, seed, dict(options)))

    return PrepareContext(model_cache_dir(config), load_dataset, config.runtime.device, config.runtime.threads,
                          progress, force)


def prepare_models(models: Iterable[tuple[ModelSpec, Mapping[str, Any]]], config: RunConfig, registry: Registry,
                   progress=None, force: bool = False, tracking=None, run_id: str = "") -> dict[str, Mapping[str, Any]]:
    """Run ``prepare`` of every model (spec, options) that has one, once per model name.

    ``tracking`` (a :class:`harness.run.tracking.TrackerSet` of the run) receives each training
    loop's progress (:class:`harness.tracking.PretrainingUpdate`) and a
    :class:`harness.tracking.ModelPrepared` per model; ``progress`` shows what is being prepared
    in its heartbeat lines."""
    from harness.tracking import ModelPrepared, PretrainingUpdate

    context = prepare_context(config, registry, progress, force)
    facts: dict[str, Mapping[str, Any]] = {}
    for spec, options in models:
        if spec.prepare is None or spec.name in facts:
            continue
        on_log = None
        if tracking is not None and tracking.active:
            def on_log(log, name=spec.name):
                tracking.emit(PretrainingUpdate(run_id, name, log.update, log.total, log.loss, log.lr, log.seconds))
        start = time.perf_counter()
        activity = progress.activity(f"preparing model {spec.name}") if hasattr(progress, "activity") else nullcontext()
        with activity:
            facts[spec.name] = spec.prepare(dataclasses.replace(context, options=dict(options), on_log=on_log))
        if tracking is not None and tracking.active:
            tracking.emit(ModelPrepared(run_id, spec.name, time.perf_counter() - start, dict(facts[spec.name] or {})))
    return facts
