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
from typing import Any

import pluggy

from harness import hookspecs
from harness.api import DatasetSpec, DecoderSpec, ExecutorSpec, MetricSpec, ModelSpec, ProtocolSpec, TrackerSpec
from harness.errors import BenchError, did_you_mean, unknown
from harness.registers import (DatasetRegister, DecoderRegister, ExecutorRegister, MetricRegister, ModelRegister,
                               Origin, ProtocolRegister, Register, Registered, TrackerRegister)

ENTRY_POINT_GROUP = "bench"

__all__ = ["ENTRY_POINT_GROUP", "Origin", "Registered", "Registry", "PluginError", "load_registry", "plugin_call",
           "process_registry"]


class PluginError(BenchError):
    """A plugin's function raised something other than a BenchError while planning (a bug in it)."""


def plugin_call(item: Registered, what: str, function: Any, *args: Any) -> Any:
    """Call a plugin's function while planning (a ``check``, ``fingerprint``, ...): a
    :class:`BenchError` passes as it is; any other exception becomes one BenchError naming the
    plugin and its distribution, instead of a traceback."""
    try:
        return function(*args)
    except BenchError:
        raise
    except Exception as exc:
        origin = item.origin
        kind = type(item.spec).__name__.removesuffix("Spec").lower()
        name = getattr(item.spec, "name", getattr(item.spec, "prefix", "?"))
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise PluginError(f"{kind} {name!r} (plugin {origin.plugin!r} from {origin}): its {what} raised {detail}",
                         f"a bug in that plugin or its settings: fix them, report it to the plugin's authors, or "
                         f"leave the plugin out with BENCH_DISABLE_PLUGINS={origin.plugin}") from exc


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
        self.trackers: dict[str, Registered[TrackerSpec]] = {}
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
        installed = sorted({ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)})
        for variable, names in (("BENCH_PLUGINS", only or set()), ("BENCH_DISABLE_PLUGINS", disabled)):
            for name in sorted(names - set(installed)):
                self.load_errors.append(
                    f"{variable} names {name!r}, which is not an installed bench plugin.{did_you_mean(name, installed)} "
                    f"Installed plugins (entry points of the 'bench' group): {', '.join(installed) or '(none)'}")
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
              "bench_register_executors", "bench_register_protocols", "bench_register_decoders",
              "bench_register_trackers")

    def _register_for(self, hook_name: str) -> Register:
        placeholder = Origin("", "(local)", "")
        if hook_name == "bench_register_models":
            return ModelRegister(self.models, self.schemes, self.groups, placeholder, self.conflicts)
        table, kind = {"bench_register_datasets": (self.datasets, DatasetRegister),
                       "bench_register_metrics": (self.metrics, MetricRegister),
                       "bench_register_executors": (self.executors, ExecutorRegister),
                       "bench_register_protocols": (self.protocols, ProtocolRegister),
                       "bench_register_decoders": (self.decoders, DecoderRegister),
                       "bench_register_trackers": (self.trackers, TrackerRegister)}[hook_name]
        return kind(table, placeholder, self.conflicts)

    def _isolated(self, impl: Any, hook_name: str, failed: dict[str, str]) -> Any:
        """``impl``'s function, run for its own plugin: the shared register acts for that plugin,
        and an exception marks the plugin failed instead of ending the hook call."""
        function, name = impl.function, impl.plugin_name
        origin = self._origins.get(name, Origin(name, "(local)", ""))

        def call(*args: Any) -> Any:
            if name in failed:
                return None
            for arg in args:
                if isinstance(arg, Register):
                    arg.acting_for(origin)
            try:
                return function(*args)
            except Exception as exc:  # one faulty plugin must not take every command down
                detail = exc.message if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
                failed[name] = f"failed in {hook_name}: {' '.join(str(detail).split())}"
                return None

        call.__wrapped__ = function  # type: ignore[attr-defined]
        return call

    def collect(self) -> "Registry":
        """Call the register hooks through pluggy's hook callers (so ``tryfirst``, ``trylast``
        and wrappers work), each plugin's implementation with the register acting for it; each
        spec remembers which plugin gave it.

        A plugin whose hook raises is reported in ``load_errors`` and skipped: whatever it had
        registered, in any hook, is taken back, so every other plugin still works."""
        failed: dict[str, str] = {}
        for hook_name in self._HOOKS:
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if not (impl.hookwrapper or impl.wrapper) and not hasattr(impl.function, "__wrapped__"):
                    impl.function = self._isolated(impl, hook_name, failed)
            caller(register=self._register_for(hook_name))
        for name, problem in failed.items():
            self._forget(name)
            self._plugin_problem(name, problem)
        return self

    def _forget(self, plugin: str) -> None:
        """Take back everything ``plugin`` registered, and the conflicts it took part in."""
        for table in (self.models, self.schemes, self.groups, self.datasets, self.metrics, self.executors,
                      self.protocols, self.decoders, self.trackers):
            for key in [k for k, item in table.items() if item.origin.plugin == plugin]:
                del table[key]
        for key in [k for k, message in self.conflicts.items()
                    if f"by {plugin} (" in message or f"and by {plugin} (" in message]:
            del self.conflicts[key]

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

    def tracker(self, name: str) -> Registered[TrackerSpec]:
        self._check_conflict("tracker", name)
        if name not in self.trackers:
            raise unknown("tracker", name, self.trackers, "choose run.trackers from that list (bench list --trackers)")
        return self.trackers[name]

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
    if not registry.models and not registry.datasets and os.environ.get("BENCH_PLUGINS") is None:
        print(
            "warning: no bench plugins found. Install bench with `pip install -e .` so that its "
            "entry points (and those of its built-in plugins) are registered.",
            file=sys.stderr,
        )
    return registry
