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
from harness.api import (DatasetSpec, DecoderSpec, ExecutorSpec, MetricSpec, ModelGroup, ModelScheme, ModelSpec,
                         ProtocolSpec)
from harness.errors import BenchError, did_you_mean, unknown

ENTRY_POINT_GROUP = "bench"

T = TypeVar("T", ModelSpec, DatasetSpec, MetricSpec, ExecutorSpec, ProtocolSpec, DecoderSpec)


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

    def __init__(self, kind: str, table: dict[str, Registered[T]], origin: Origin,
                 conflicts: dict[tuple[str, str], str] | None = None) -> None:
        self._kind, self._table, self._origin = kind, table, origin
        self._conflicts = conflicts if conflicts is not None else {}

    def __call__(self, spec: T) -> None:
        if not spec.name or any(c.isspace() for c in spec.name) or "," in spec.name:
            raise BenchError(
                f"plugin {self._origin.plugin!r} registered a {self._kind} with an invalid name {spec.name!r}",
                "names must be non-empty and contain no spaces or commas",
            )
        previous = self._table.get(spec.name)
        if previous is not None and previous.origin != self._origin:
            # only the commands that use this name stop (Registry lookups raise); others warn
            self._conflicts[(self._kind, spec.name)] = (
                f"{self._kind} {spec.name!r} is registered twice: by {previous.origin.plugin} "
                f"({previous.origin}) and by {self._origin.plugin} ({self._origin})")
            return
        self._table[spec.name] = Registered(spec, self._origin)


class ModelRegister(_Register[ModelSpec]):
    def __init__(self, table: dict, schemes: dict, groups: dict, origin: Origin,
                 conflicts: dict | None = None) -> None:
        super().__init__("model", table, origin, conflicts)
        self._schemes = schemes
        self._groups = groups

    def scheme(self, scheme: ModelScheme) -> None:
        self._schemes[scheme.prefix] = Registered(scheme, self._origin)  # type: ignore[arg-type]

    def group(self, group: ModelGroup) -> None:
        """A named set of models (``--models english``); members may come from any plugin, and a
        group several plugins register has the members of all of them (``tiny``)."""
        if group.name in self._table:
            raise BenchError(f"plugin {self._origin.plugin!r} registered group {group.name!r}, which is also a model",
                             "give the group another name")
        previous = self._groups.get(group.name)
        if previous is not None and previous.origin != self._origin:
            # two plugins adding to one group (``tiny``): its members are the union, in order
            members = (*previous.spec.members, *(m for m in group.members if m not in previous.spec.members))
            group = ModelGroup(group.name, members, previous.spec.description or group.description)
            self._groups[group.name] = Registered(group, previous.origin)  # type: ignore[arg-type]
            return
        self._groups[group.name] = Registered(group, self._origin)  # type: ignore[arg-type]


class DatasetRegister(_Register[DatasetSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("dataset", table, origin, conflicts)


class MetricRegister(_Register[MetricSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("metric", table, origin, conflicts)


class ExecutorRegister(_Register[ExecutorSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("executor", table, origin, conflicts)


class ProtocolRegister(_Register[ProtocolSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("protocol", table, origin, conflicts)


class DecoderRegister(_Register[DecoderSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("decoder", table, origin, conflicts)


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
        self.decoders: dict[str, Registered[DecoderSpec]] = {}
        self._origins: dict[str, Origin] = {}
        self.load_errors: list[str] = []
        #: (kind, name) -> message, for names two plugins registered; looking one up raises
        self.conflicts: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ loading
    def _plugin_problem(self, name: str, problem: str) -> None:
        """Record that plugin ``name`` is broken (it is skipped) and forget what it registered."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        origin = self._origins.pop(name, None)
        where = f" from {origin.distribution}" if origin is not None and origin.distribution != "(local)" else ""
        self.load_errors.append(f"plugin {name!r}{where} {problem}. Fix or uninstall it, or set "
                                f"BENCH_DISABLE_PLUGINS={name}; it is skipped.")

    def add_plugin(self, plugin: object, name: str, distribution: str = "(local)", version: str = "") -> bool:
        """Register a plugin object (module) directly; entry points go through here too.

        A plugin whose hooks do not match the contract (an argument the hook does not have, a
        function named like a hook that is none) is reported in ``load_errors`` and skipped;
        returns whether it was registered."""
        self._origins[name] = Origin(name, distribution, version)
        misspelled = sorted(attr for attr in dir(plugin) if attr.startswith("bench_register")
                            and callable(getattr(plugin, attr, None)) and not hasattr(hookspecs, attr))
        if misspelled:
            known = [h for h in dir(hookspecs) if h.startswith("bench_register")]
            suggestions = "".join(did_you_mean(m, known) for m in misspelled)
            self._plugin_problem(name, f"defines {', '.join(misspelled)}, which is not a bench hook.{suggestions}"
                                       f" (hooks: {', '.join(known)})")
            return False
        try:
            self.pm.register(plugin, name=name)
            for caller in self.pm.get_hookcallers(plugin) or []:
                if not caller.has_spec():
                    raise pluggy.PluginValidationError(plugin, f"{caller.name} is not a bench hook")
        except Exception as exc:  # pluggy's validation (unknown hook, misnamed argument) or a clash of names
            self._plugin_problem(name, f"does not match the plugin contract: {type(exc).__name__}: "
                                       f"{' '.join(str(exc).split())}")
            return False
        return True

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

    _HOOKS = ("bench_register_models", "bench_register_datasets", "bench_register_metrics",
              "bench_register_executors", "bench_register_protocols", "bench_register_decoders")

    def collect(self) -> "Registry":
        """Call every plugin's register hooks; each spec remembers which plugin gave it.

        A plugin whose hook raises is reported in ``load_errors`` and skipped: whatever it had
        registered is taken back, so every other plugin still works."""
        for name, _plugin in list(self.pm.list_name_plugin()):
            if _plugin is None:
                continue
            origin = self._origins.get(name, Origin(name, "(local)", ""))
            tables = ("models", "schemes", "groups", "datasets", "metrics", "executors", "protocols",
                      "decoders", "conflicts")
            snapshot = {t: dict(getattr(self, t)) for t in tables}
            hook_name = ""
            try:
                for hook_name in self._HOOKS:
                    for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                        if impl.plugin_name != name:
                            continue
                        if hook_name == "bench_register_models":
                            register: Any = ModelRegister(self.models, self.schemes, self.groups, origin,
                                                          self.conflicts)
                        elif hook_name == "bench_register_datasets":
                            register = DatasetRegister(self.datasets, origin, self.conflicts)
                        elif hook_name == "bench_register_executors":
                            register = ExecutorRegister(self.executors, origin, self.conflicts)
                        elif hook_name == "bench_register_protocols":
                            register = ProtocolRegister(self.protocols, origin, self.conflicts)
                        elif hook_name == "bench_register_decoders":
                            register = DecoderRegister(self.decoders, origin, self.conflicts)
                        else:
                            register = MetricRegister(self.metrics, origin, self.conflicts)
                        impl.function(register=register)
            except Exception as exc:  # one faulty plugin must not take every command down
                for table, saved in snapshot.items():
                    setattr(self, table, saved)
                detail = exc.message if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
                self._plugin_problem(name, f"failed in {hook_name}: {' '.join(str(detail).split())}")
        return self

    # ------------------------------------------------------------------ lookup
    def _check_conflict(self, kind: str, name: str) -> None:
        message = self.conflicts.get((kind, name))
        if message is not None:
            raise BenchError(message, "uninstall one of them or exclude one with BENCH_DISABLE_PLUGINS=NAME")

    def model(self, name: str) -> Registered[ModelSpec]:
        self._check_conflict("model", name)
        if name in self.models:
            return self.models[name]
        prefix, sep, argument = name.partition(":")
        if sep and prefix in self.schemes:
            scheme = self.schemes[prefix]
            return Registered(scheme.spec.resolve(argument), scheme.origin)
        hint = "choose --models (run.models) from that list"
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
        self._check_conflict("dataset", name)
        if name not in self.datasets:
            raise unknown("dataset", name, self.datasets, "choose --datasets (run.datasets) from that list")
        return self.datasets[name]

    def executor(self, name: str) -> Registered[ExecutorSpec]:
        self._check_conflict("executor", name)
        if name not in self.executors:
            raise unknown("executor", name, self.executors, "choose one with --executor or run.executor")
        return self.executors[name]

    def protocol(self, name: str) -> Registered[ProtocolSpec]:
        self._check_conflict("protocol", name)
        if name not in self.protocols:
            raise unknown("protocol", name, self.protocols, "choose with --protocols or run.protocols")
        return self.protocols[name]

    def decoder(self, name: str) -> Registered[DecoderSpec]:
        self._check_conflict("decoder", name)
        if name not in self.decoders:
            raise unknown("decoder", name, self.decoders, "choose --decoders (run.decoders) from that list "
                          "(bench list --decoders)")
        return self.decoders[name]

    def metric(self, name: str) -> Registered[MetricSpec]:
        self._check_conflict("metric", name)
        if name not in self.metrics:
            raise unknown("metric", name, self.metrics, "choose --metrics (run.metrics) from that list")
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
    for message in registry.conflicts.values():
        print(f"warning: {message}; commands that use it stop. Uninstall one of them or exclude one with "
              "BENCH_DISABLE_PLUGINS=NAME.", file=sys.stderr)
    if not registry.models and not registry.datasets:
        print(
            "warning: no bench plugins found. Install bench with `pip install -e .` so that its "
            "entry points (and those of its built-in plugins) are registered.",
            file=sys.stderr,
        )
    return registry
