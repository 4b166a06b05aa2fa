"""The objects a plugin's register hook receives, and what they record.

Each ``bench_register_*`` hook (:mod:`harness.hookspecs`) is called with one of these register
objects; calling it registers a spec, which the registry keeps as a :class:`Registered` with the
:class:`Origin` of the plugin that gave it. One register object serves every plugin of a hook
call: the registry points it at the plugin whose implementation runs (:meth:`Register.acting_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from harness.api import (DatasetSpec, DecoderSpec, ExecutorSpec, MetricSpec, ModelGroup, ModelScheme, ModelSpec,
                         ProtocolSpec, TrackerSpec)
from harness.errors import BenchError

T = TypeVar("T", ModelSpec, DatasetSpec, MetricSpec, ExecutorSpec, ProtocolSpec, DecoderSpec, TrackerSpec)


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


class Register(Generic[T]):
    """The object a plugin's hook receives; calling it registers one spec."""

    def __init__(self, kind: str, table: dict[str, Registered[T]], origin: Origin,
                 conflicts: dict[tuple[str, str], str] | None = None) -> None:
        self._kind, self._table, self._origin = kind, table, origin
        self._conflicts = conflicts if conflicts is not None else {}

    def acting_for(self, origin: Origin) -> None:
        """Register what follows on behalf of the plugin of ``origin``."""
        self._origin = origin

    def __call__(self, spec: T) -> None:
        """Register ``spec``; a name another plugin registered too is a conflict (reported, and
        only the commands that use that name stop)."""
        if not spec.name or any(c.isspace() for c in spec.name) or "," in spec.name:
            raise BenchError(
                f"plugin {self._origin.plugin!r} registered a {self._kind} with an invalid name {spec.name!r}",
                "names must be non-empty and contain no spaces or commas",
            )
        previous = self._table.get(spec.name)
        if previous is not None and previous.origin != self._origin:
            # only the commands that use this name stop (Registry lookups raise); others warn
            first, second = sorted((previous.origin, self._origin), key=lambda o: o.plugin)
            self._conflicts[(self._kind, spec.name)] = (
                f"{self._kind} {spec.name!r} is registered twice: by {first.plugin} ({first}) "
                f"and by {second.plugin} ({second})")
            return
        self._table[spec.name] = Registered(spec, self._origin)


class ModelRegister(Register[ModelSpec]):
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


class DatasetRegister(Register[DatasetSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("dataset", table, origin, conflicts)


class MetricRegister(Register[MetricSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("metric", table, origin, conflicts)


class ExecutorRegister(Register[ExecutorSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("executor", table, origin, conflicts)


class ProtocolRegister(Register[ProtocolSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("protocol", table, origin, conflicts)


class DecoderRegister(Register[DecoderSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("decoder", table, origin, conflicts)


class TrackerRegister(Register[TrackerSpec]):
    def __init__(self, table: dict, origin: Origin, conflicts: dict | None = None) -> None:
        super().__init__("tracker", table, origin, conflicts)
