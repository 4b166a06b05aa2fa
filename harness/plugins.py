"""Plugin discovery and the registry of models, datasets and metrics.

Plugins are found through the ``bench`` entry-point group: the built-in ones are declared in
bench's own pyproject.toml exactly as a third-party distribution would declare its own.
``BENCH_PLUGINS`` (comma-separated entry-point names) restricts which ones load and
``BENCH_DISABLE_PLUGINS`` excludes some.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pluggy

from harness import hookspecs
from harness.api import DatasetSpec, ExecutorSpec, MetricSpec, ModelGroup, ModelScheme, ModelSpec, ProtocolSpec
from harness.errors import BenchError, unknown

ENTRY_POINT_GROUP = "bench"

T = TypeVar("T", ModelSpec, DatasetSpec, MetricSpec, ExecutorSpec, ProtocolSpec)


@dataclass(frozen=True)
class Origin:
    """Where a registered item came from."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}"


@dataclass(frozen=True)
class Registered(Generic[T]):
    spec: T
    origin: Origin


class _Register(Generic[T]):
    """The object a plugin's hook receives; calling it registers one spec."""

    def __init__(self, kind: str, table: dict[str, Registered[T]], origin: Origin) -> None:
        self._kind, self._table, self._origin = kind, table, origin

    def __call__(self, spec: T) -> None:
        if not spec.name or any(c.isspace() for c in spec.name) or "," in spec.name:
            raise BenchError(
                f"plugin {self._origin.plugin!r} registered a {self._kind} with an invalid name {spec.name!r}",
                "names must be non-empty and contain no spaces or commas",
            )
        previous = self._table.get(spec.name)
        if previous is not None and previous.origin != self._origin:
            raise BenchError(
                f"{self._kind} {spec.name!r} is registered twice: by {previous.origin.plugin} "
                f"({previous.origin}) and by {self._origin.plugin} ({self._origin})",
                "uninstall one of them or exclude one with BENCH_DISABLE_PLUGINS=NAME",
            )
        self._table[spec.name] = Registered(spec, self._origin)


class ModelRegister(_Register[ModelSpec]):
    def __init__(self, table: dict, schemes: dict, groups: dict, origin: Origin) -> None:
        super().__init__("model", table, origin)
        self._schemes = schemes
        self._groups = groups

    def scheme(self, scheme: ModelScheme) -> None:
        self._schemes[scheme.prefix] = Registered(scheme, self._origin)  # type: ignore[arg-type]

    def group(self, group: ModelGroup) -> None:
        """A named set of models (``--models english``); members may come from any plugin."""
        if group.name in self._table:
            raise BenchError(f"plugin {self._origin.plugin!r} registered group {group.name!r}, which is also a model",
                             "give the group another name")
        self._groups[group.name] = Registered(group, self._origin)  # type: ignore[arg-type]


class DatasetRegister(_Register[DatasetSpec]):
    def __init__(self, table: dict, origin: Origin) -> None:
        super().__init__("dataset", table, origin)


class MetricRegister(_Register[MetricSpec]):
    def __init__(self, table: dict, origin: Origin) -> None:
        super().__init__("metric", table, origin)


class ExecutorRegister(_Register[ExecutorSpec]):
    def __init__(self, table: dict, origin: Origin) -> None:
        super().__init__("executor", table, origin)


class ProtocolRegister(_Register[ProtocolSpec]):
    def __init__(self, table: dict, origin: Origin) -> None:
        super().__init__("protocol", table, origin)


def _names_from_env(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


class Registry:
    """Every model, dataset and metric the loaded plugins provide."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.models: dict[str, Registered[ModelSpec]] = {}
        self.schemes: dict[str, Registered[Any]] = {}
        self.groups: dict[str, Registered[Any]] = {}
        self.datasets: dict[str, Registered[DatasetSpec]] = {}
        self.metrics: dict[str, Registered[MetricSpec]] = {}
        self.executors: dict[str, Registered[ExecutorSpec]] = {}
        self.protocols: dict[str, Registered[ProtocolSpec]] = {}
        self._origins: dict[str, Origin] = {}
        self.load_errors: list[str] = []

    # ------------------------------------------------------------------ loading
    def add_plugin(self, plugin: object, name: str, distribution: str = "(local)", version: str = "") -> None:
        """Register a plugin object (module) directly; entry points go through here too."""
        self.pm.register(plugin, name=name)
        self._origins[name] = Origin(name, distribution, version)

    def load_entry_points(self) -> None:
        only = _names_from_env("BENCH_PLUGINS")
        disabled = _names_from_env("BENCH_DISABLE_PLUGINS") or set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if (only is not None and ep.name not in only) or ep.name in disabled:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            dist = ep.dist
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take bench down
                message = (
                    f"plugin {ep.name!r} ({ep.value}) from {dist.name if dist else '?'} failed to load: "
                    f"{type(exc).__name__}: {exc}. Fix or uninstall it, or set BENCH_DISABLE_PLUGINS={ep.name}."
                )
                self.load_errors.append(message)
                continue
            self.add_plugin(plugin, ep.name, dist.name if dist else "(unknown)", dist.version if dist else "")

    def collect(self) -> "Registry":
        """Call every plugin's register hooks; each spec remembers which plugin gave it."""
        hooks = ("bench_register_models", "bench_register_datasets", "bench_register_metrics",
                 "bench_register_executors", "bench_register_protocols")
        for hook_name in hooks:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                origin = self._origins.get(impl.plugin_name, Origin(impl.plugin_name, "(local)", ""))
                if hook_name == "bench_register_models":
                    register: Any = ModelRegister(self.models, self.schemes, self.groups, origin)
                elif hook_name == "bench_register_datasets":
                    register = DatasetRegister(self.datasets, origin)
                elif hook_name == "bench_register_executors":
                    register = ExecutorRegister(self.executors, origin)
                elif hook_name == "bench_register_protocols":
                    register = ProtocolRegister(self.protocols, origin)
                else:
                    register = MetricRegister(self.metrics, origin)
                impl.function(register=register)
        return self

    # ------------------------------------------------------------------ lookup
    def model(self, name: str) -> Registered[ModelSpec]:
        if name in self.models:
            return self.models[name]
        prefix, sep, argument = name.partition(":")
        if sep and prefix in self.schemes:
            scheme = self.schemes[prefix]
            return Registered(scheme.spec.resolve(argument), scheme.origin)
        hint = None
        if sep:
            hint = f"known model schemes: {', '.join(sorted(self.schemes)) or '(none)'} (PREFIX:ARGUMENT)"
        elif self.schemes:
            hint = "any Hugging Face CTC checkpoint works as hf:HUB_ID or hf:/path/to/checkpoint"
        raise unknown("model", name, [*self.models, *self.groups], hint)

    def expand_models(self, names: Iterable[str]) -> list[str]:
        """Model names with groups replaced by their members (first occurrence kept, in order)."""
        out: list[str] = []
        for name in names:
            if name not in self.models and name in self.groups:
                members = self.groups[name].spec.members
            else:
                members = (name,)
            out += [m for m in members if m not in out]
        return out

    def dataset(self, name: str) -> Registered[DatasetSpec]:
        if name not in self.datasets:
            raise unknown("dataset", name, self.datasets)
        return self.datasets[name]

    def executor(self, name: str) -> Registered[ExecutorSpec]:
        if name not in self.executors:
            raise unknown("executor", name, self.executors, "choose one with --executor or run.executor")
        return self.executors[name]

    def protocol(self, name: str) -> Registered[ProtocolSpec]:
        if name not in self.protocols:
            raise unknown("protocol", name, self.protocols, "choose with --protocols or run.protocols")
        return self.protocols[name]

    def metric(self, name: str) -> Registered[MetricSpec]:
        if name not in self.metrics:
            raise unknown("metric", name, self.metrics)
        return self.metrics[name]

    def plugin_origins(self) -> Iterable[Origin]:
        return self._origins.values()


def _discovery_state() -> tuple:
    """What decides which plugins are found: the import path and the plugin switches."""
    return tuple(sys.path), os.environ.get("BENCH_PLUGINS"), os.environ.get("BENCH_DISABLE_PLUGINS")


_LOADED: dict[tuple, Registry] = {}


def process_registry() -> Registry:
    """The registry of this process, loaded once per plugin discovery state (a worker computing
    many cells finds its plugins once; a changed ``sys.path`` or switch loads them again)."""
    state = _discovery_state()
    if state not in _LOADED:
        _LOADED.clear()
        _LOADED[state] = load_registry()
    return _LOADED[state]


def load_registry() -> Registry:
    """The registry of every installed plugin (entry points), collected."""
    registry = Registry()
    registry.load_entry_points()
    registry.collect()
    for message in registry.load_errors:
        print(f"warning: {message}", file=sys.stderr)
    if not registry.models and not registry.datasets:
        print(
            "warning: no bench plugins found. Install bench with `pip install -e .` so that its "
            "entry points (and those of its built-in plugins) are registered.",
            file=sys.stderr,
        )
    return registry
