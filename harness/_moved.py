"""Old module names of the flat layout, still importable with a DeprecationWarning.

``import harness.train`` (or ``from harness.config import TrainSettings``) keeps working for
third-party code written before the layout became subpackages: a finder on ``sys.meta_path``
answers the old name with the module now holding its contents, and warns once with the new name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module -> the module that now holds what it held (removed in bench 0.4)
MOVED: dict[str, str] = {
    "harness.config": "harness.plan.config",
    "harness.matrix": "harness.plan.cells",
    "harness.planning": "harness.plan.planner",
    "harness.cost": "harness.plan.cost",
    "harness.train": "harness.engine.compat_train",
    "harness.batching": "harness.engine.batching",
    "harness.schedule": "harness.engine.schedule",
    "harness.text": "harness.engine.text",
    "harness.device": "harness.engine.device",
    "harness.scoring": "harness.engine.scoring",
    "harness.runner": "harness.run.runner",
    "harness.cellwork": "harness.run.cell",
    "harness.prepare": "harness.run.prepare_models",
    "harness.progress": "harness.run.progress",
    "harness.provenance": "harness.run.provenance",
    "harness.executors": "harness.run.executors",
    "harness.executors.local": "harness.run.executors.local",
    "harness.executors.ray_executor": "harness.run.executors.ray_executor",
    "harness.executors.slurm": "harness.run.executors.slurm",
    "harness.report_facts": "harness.report.facts",
    "harness.report_page": "harness.report.page",
    "harness.stats": "harness.report.stats",
    "harness.bootstrap": "harness.report.bootstrap",
    "harness.compare": "harness.report.compare",
    "harness.utterance_cache": "harness.data.utterance_cache",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there (the old name goes in bench 0.4)",
                      DeprecationWarning, stacklevel=3)
        module = importlib.import_module(self.new)
        self.spec = module.__spec__  # the import system sets the alias's spec on it: put it back after
        return module

    def exec_module(self, module) -> None:  # the target module is already executed
        module.__spec__ = self.spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
