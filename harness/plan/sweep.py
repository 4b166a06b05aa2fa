"""Sweeps: any recipe, dataset, protocol or model option as a dimension of the matrix.

``--sweep train.lr=3e-5,1e-4,3e-4`` (repeatable) or ``[run] sweep = { "train.lr" = [3e-5, 1e-4] }``
make one *point* per combination of the swept values. A point is the run's configuration with
those values set, exactly as ``--set`` would set them: each cell planned at a point has the key a
run with those ``--set`` values would give it, so a value computed before (swept or not) is
found in the store and not computed again.

Values are checked like the option itself: ``train.*`` by building the recipe
(:class:`harness.plan.config.TrainSettings`), protocol options by the protocol's own check,
dataset and model options against the options the plugin declares (and their values when the
plugin loads the data). Which value a report keeps is decided on dev
(:mod:`harness.report.selection`).
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import BenchError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from harness.plan.config import RunConfig

#: the sections a sweep may name, and how many parts its key has there
SWEEPABLE = {"train": 2, "datasets": 3, "protocols": 3, "models": 3}
#: dataset options that set how much training data a cell gets: a sweep of one is a data regime
#: (a learning curve), never a choice made on dev
DATA_AMOUNT_OPTIONS = ("train_hours", "train_minutes")

HINT = ('e.g. --sweep train.lr=1e-4,3e-4 or [run] sweep = { "train.lr" = [1e-4, 3e-4] }; sweepable: train.KEY, '
        "datasets.NAME.KEY, protocols.NAME.KEY, models.NAME.KEY")


@dataclass(frozen=True)
class SweepAxis:
    """One swept setting: its dotted key (``train.lr``, ``datasets.common_voice.train_hours``)
    and its values, in the order given (duplicates dropped)."""

    key: str
    values: tuple[Any, ...]

    @property
    def section(self) -> str:
        return self.key.split(".")[0]

    @property
    def option(self) -> str:
        """The option's own name (``lr``, ``train_hours``)."""
        return self.key.split(".")[-1]

    @property
    def plugin(self) -> str | None:
        """The dataset, protocol or model named in the key (None for ``train.*``)."""
        parts = self.key.split(".")
        return parts[1] if len(parts) == 3 else None

    @property
    def is_data_amount(self) -> bool:
        """A dataset's training amount: a data regime (learning curve), not chosen on dev."""
        return self.section == "datasets" and self.option in DATA_AMOUNT_OPTIONS

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)

    def edges(self) -> tuple[Any, Any] | None:
        """The smallest and largest value of a numeric grid of at least two values (else None)."""
        if not self.numeric or len(self.values) < 2:
            return None
        return min(self.values), max(self.values)

    def grid(self) -> str:
        return "{" + ", ".join(format_value(v) for v in sorted_values(self.values)) + "}"

    def describe(self) -> str:
        return f"{self.key} in {self.grid()}"


#: a point of a sweep: ((key, value), ...) in the order of the axes
Point = tuple[tuple[str, Any], ...]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def sorted_values(values: Sequence[Any]) -> list[Any]:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return list(values)


def point_label(point: Point) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in point)


def _parse_value(raw: str) -> Any:
    raw = raw.strip()
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # bare words are strings, as with --set


def parse_sweep_flags(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["train.lr=1e-3,2e-3"]`` -> ``{"train.lr": [0.001, 0.002]}`` (a TOML array works too:
    ``train.lr=[1e-3, 2e-3]``)."""
    out: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise BenchError(f"--sweep {item!r} is not of the form SECTION.KEY=V1,V2,...", HINT)
        raw = raw.strip()
        if raw.startswith("["):
            values = _parse_value(raw)
            if not isinstance(values, list):
                raise BenchError(f"--sweep {item!r}: {raw!r} is not a TOML array", HINT)
        else:
            values = [_parse_value(part) for part in raw.split(",") if part.strip()]
        out[key] = values
    return out


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": [..]}}`` (TOML's dotted inline keys) and ``{"train.lr": [..]}`` alike."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def parse_axes(raw: Any, where: str = "run.sweep") -> tuple[SweepAxis, ...]:
    """``run.sweep`` (after the ``--sweep`` flags were merged into it) -> the axes, the keys'
    shapes and the value lists checked (values are checked per option by :func:`config_at`)."""
    if raw in (None, {}):
        return ()
    if not isinstance(raw, Mapping):
        raise BenchError(f"{where} must be a table of SETTING = [values], got {raw!r}", HINT)
    axes = []
    for key, values in _flatten(raw).items():
        parts = key.split(".")
        section = parts[0]
        if section == "run":
            raise BenchError(f"{where}: {key} cannot be swept: run settings choose what runs (seeds, models and "
                             "languages are dimensions already) or how it is computed (not what it computes)",
                             "sweep a recipe or plugin option instead: train.KEY, datasets.NAME.KEY, "
                             "protocols.NAME.KEY or models.NAME.KEY")
        if section not in SWEEPABLE:
            raise BenchError(f"{where}: {key!r} names no sweepable section.{did_you_mean(section, SWEEPABLE)}", HINT)
        if len(parts) != SWEEPABLE[section] or not all(parts):
            shape = "train.KEY" if section == "train" else f"{section}.NAME.KEY"
            raise BenchError(f"{where}: {key!r} is not of the form {shape}", HINT)
        if not isinstance(values, list) or not values:
            raise BenchError(f"{where}: {key} must list at least one value, got {values!r}", HINT)
        if any(isinstance(v, (list, dict)) for v in values) and section == "train":
            raise BenchError(f"{where}: {key} lists a non-scalar value ({values!r})", HINT)
        unique: list[Any] = []
        for v in values:
            if not any(v == u and type(v) is type(u) for u in unique):
                unique.append(v)
        axes.append(SweepAxis(key, tuple(unique)))
    return tuple(axes)


def points(axes: Sequence[SweepAxis]) -> Iterator[Point]:
    """Every combination of the axes' values (one empty point without axes)."""
    for values in itertools.product(*(axis.values for axis in axes)):
        yield tuple((axis.key, value) for axis, value in zip(axes, values))


def config_at(config: RunConfig, point: Point) -> RunConfig:
    """The run's configuration at one point of its sweep (itself without a sweep): each value set
    as ``--set`` would set it, and checked as the option is (a BenchError names the sweep)."""
    from harness.plan.config import TrainSettings, _coerce, train_setting_types

    train = dict(dataclasses.asdict(config.train))
    hints = train_setting_types()
    sections = {"datasets": {k: dict(v) for k, v in config.dataset_options.items()},
                "protocols": {k: dict(v) for k, v in config.protocol_options.items()},
                "models": {k: dict(v) for k, v in config.model_options.items()}}
    for key, value in point:
        parts = key.split(".")
        try:
            if parts[0] == "train":
                if parts[1] not in hints:
                    raise BenchError(f"unknown setting {parts[1]!r}.{did_you_mean(parts[1], hints)}",
                                     f"valid train settings: {', '.join(sorted(hints))}")
                train[parts[1]] = _coerce(key, value, hints[parts[1]])
            else:
                sections[parts[0]].setdefault(parts[1], {})[parts[2]] = value
        except BenchError as exc:
            raise BenchError(f"sweep {key}={format_value(value)}: {exc.message}",
                             exc.hint or "fix the value in --sweep or run.sweep") from None
    try:
        recipe = TrainSettings(**train)
    except BenchError as exc:
        label = point_label(tuple((k, v) for k, v in point if k.startswith("train.")))
        raise BenchError(f"sweep {label}: {exc.message}", "fix the value in --sweep or run.sweep") from None
    return dataclasses.replace(config, train=recipe, dataset_options=sections["datasets"],
                               protocol_options=sections["protocols"], model_options=sections["models"], sweep=())


def value_in_identity(identity: Mapping[str, Any], key: str) -> Any:
    """The value a stored cell had for a swept ``key``, read from its identity (None when the
    identity does not hold it: a default the plugin filled in, or an older record)."""
    parts = key.split(".")
    if parts[0] == "train":
        return identity.get("train", {}).get(parts[1])
    place = {"datasets": "dataset", "protocols": "protocol", "models": "model"}[parts[0]]
    return identity.get(place, {}).get("options", {}).get(parts[2])
