"""Planning a run: every name resolved and every option checked before any work.

The plan is the list of cells (models x datasets x languages x seeds x protocols) with their
keys and the specs that compute them. Workers redo the planning for the cell they are given
(``harness.run.cell``), so planning is cheap and deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api import DatasetRequest, DatasetSpec, MetricSpec, ModelSpec, ProtocolSpec
from harness.plan.config import RunConfig, check_sections
from harness.errors import BenchError, did_you_mean
from harness.plan.cells import Cell, cell_identity, cell_key
from harness.plan.sweep import Point, SweepAxis, config_at, point_label, points
from harness.plugins import PluginError, Registered, Registry, plugin_call

ALL = "all"
#: the study's languages, as a ``--langs`` group
STUDY = "study"

#: named selections ``--langs`` understands besides language codes (``bench list --languages``)
LANGUAGE_GROUPS: Mapping[str, str] = {
    ALL: "every language the dataset offers",
    STUDY: "the study's 18 Common Voice languages (DESIGN.md section 4), those the dataset offers",
}
#: what ``--models all`` means (``bench list --models``)
ALL_MODELS = ("every registered model: the study's catalog, the tiny models and those of third-party "
              "plugins, plus [models.NAME] aliases (not hf:/torchaudio:/s3prl: references)")


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    key: str
    identity: dict[str, Any]
    model: Registered[ModelSpec]
    dataset: Registered[DatasetSpec]
    model_options: Mapping[str, Any]
    dataset_options: Mapping[str, Any]
    protocol: Registered[ProtocolSpec]
    #: the protocol's options merged over its defaults
    protocol_options: Mapping[str, Any]
    #: the cell's point of the run's sweep (``((key, value), ...)``; empty without a sweep):
    #: :func:`harness.plan.sweep.config_at` gives the configuration it is computed with
    point: Point = ()


@dataclass(frozen=True)
class Plan:
    cells: tuple[PlannedCell, ...]
    metrics: tuple[MetricSpec, ...]
    #: the swept settings (each cell's ``point`` sets one value of each)
    sweep: tuple[SweepAxis, ...] = ()


# --------------------------------------------------------------------------- paths of a run
def checkpoint_path(config: RunConfig, key: str) -> Path:
    return config.cache_dir / "checkpoints" / f"{key}.pt"


def model_cache_dir(config: RunConfig) -> Path:
    """Where models keep what their ``prepare`` made (pre-trained checkpoints)."""
    return config.cache_dir / "models"


def dataset_request(config: RunConfig, dataset: str, language: str, seed: int, options) -> DatasetRequest:
    """What a dataset plugin is asked for: its cache lives in ``<run.cache_dir>/datasets/<name>``."""
    return DatasetRequest(language, seed, options, config.cache_dir / "datasets" / dataset)


def data_request(config: RunConfig, cell: Cell, options) -> DatasetRequest:
    return dataset_request(config, cell.dataset, cell.language, cell.seed, options)


# --------------------------------------------------------------------------- resolving names
def _resolve_model(name: str, config: RunConfig, registry: Registry) -> tuple[Registered[ModelSpec], dict]:
    """The model and its options: ``[models.NAME]`` over the entries of ``train.model_config``
    that the model declares (so a preset-wide setting keys a cell as the same per-model one would)."""
    options = dict(config.model_options.get(name, {}))
    alias_of = options.pop("from", None)
    if alias_of is not None and name not in registry.models:
        if not isinstance(alias_of, str):
            raise BenchError(f"[models.{name}] from must be a model name such as 'hf:/path/to/checkpoint'")
        found = registry.model(alias_of)
        spec = dataclasses.replace(found.spec, name=name, metadata={**found.spec.metadata, "from": alias_of})
        model = Registered(spec, found.origin)
    else:
        model = registry.model(name)
    overrides = getattr(config.train, "model_config_for", None)
    if overrides is not None:
        options = {**overrides(model.spec.options), **options}
    return model, options


def resolve_models(config: RunConfig, registry: Registry) -> dict[str, tuple[Registered[ModelSpec], dict]]:
    """The configured models (``all`` and groups expanded, aliases resolved) and their options."""
    model_names = list(config.models)
    if ALL in model_names:
        aliases = [n for n, opts in config.model_options.items() if "from" in opts]
        model_names = sorted(set(registry.models) | set(aliases))
    model_names = registry.expand_models(model_names)
    resolved = {name: _resolve_model(name, config, registry) for name in model_names}
    check_sections(config, registry, model_names)
    for name, (model, options) in resolved.items():  # declared options: typos fail before any cell
        for key in options:
            if model.spec.options and key not in model.spec.options:
                raise BenchError(f"[models.{name}]: unknown option {key!r}.{did_you_mean(key, model.spec.options)}",
                                 f"options of {name}: {', '.join(model.spec.options)}")
    return resolved


def resolve_protocols(config: RunConfig, registry: Registry) -> dict[str, tuple[Registered[ProtocolSpec], dict]]:
    """The configured protocols and their options merged over the defaults (checked)."""
    for name in config.protocol_options:
        if name not in registry.protocols:
            raise BenchError(f"[protocols.{name}] names no installed protocol.{did_you_mean(name, registry.protocols)}",
                             f"protocols: {', '.join(sorted(registry.protocols)) or '(none)'} (bench list --protocols)")
    names = sorted(registry.protocols) if ALL in config.protocols else list(config.protocols)
    out = {}
    for name in names:
        found = registry.protocol(name)
        raw = config.protocol_options.get(name, {})
        defaults = found.spec.defaults
        for key in raw:
            if key not in defaults:
                raise BenchError(f"[protocols.{name}]: unknown option {key!r}.{did_you_mean(key, defaults)}",
                                 f"options of {name}: {', '.join(defaults) or '(none)'}")
        options = {**defaults, **raw}
        if found.spec.check is not None:
            plugin_call(found, "check of its options", found.spec.check, options)
        out[name] = (found, options)
    return out


def data_fingerprint(dataset: Registered[DatasetSpec], config: RunConfig, language: str,
                     options: Mapping[str, Any]) -> dict | None:
    """The dataset's fingerprint of a language's data (None without one); data it cannot find
    gives ``{"unavailable": message}``, reported by the checks before any cell runs."""
    spec = dataset.spec
    if spec.fingerprint is None:
        return None
    try:
        return dict(plugin_call(dataset, "fingerprint", spec.fingerprint,
                                dataset_request(config, spec.name, language, config.seeds[0], options)))
    except PluginError:  # a bug in the plugin, not missing data: stop planning with its one line
        raise
    except BenchError as exc:
        return {"unavailable": exc.message}


def select_languages(requested: Sequence[str], supported: Sequence[str], dataset: str) -> list[str]:
    """The languages of ``dataset`` that ``--langs`` selects: codes, ``all`` (every language the
    dataset offers) and ``study`` (the study's languages the dataset offers); each once, in order."""
    from harness.languages import STUDY_LANGUAGES

    out: list[str] = []
    for lang in requested:
        if lang == ALL:
            members = list(supported)
        elif lang == STUDY:
            members = [code for code in STUDY_LANGUAGES if code in supported]
        elif lang not in supported:
            raise BenchError(
                f"dataset {dataset!r} has no language {lang!r}.{did_you_mean(lang, supported)} "
                f"Languages of {dataset}: {', '.join(supported)}.",
                "choose --langs from that list (codes as in Common Voice), or a group: "
                + ", ".join(f"{name} ({what})" for name, what in LANGUAGE_GROUPS.items()),
            )
        else:
            members = [lang]
        out += [m for m in members if m not in out]
    return out


def _check_dataset_options(name: str, options: Mapping[str, Any], spec: DatasetSpec) -> None:
    if spec.options:
        for key in options:
            if key not in spec.options:
                raise BenchError(
                    f"[datasets.{name}]: unknown option {key!r}.{did_you_mean(key, spec.options)}",
                    f"options of {name}: {', '.join(spec.options)}",
                )


def _check_sweep_targets(config: RunConfig, plan_models: Sequence[str], datasets: Sequence[str],
                         protocols: Sequence[str]) -> None:
    """A swept plugin option must belong to a dataset, protocol or model of the run."""
    selected = {"datasets": set(datasets), "protocols": set(protocols), "models": set(plan_models)}
    for axis in config.sweep:
        if axis.plugin is not None and axis.plugin not in selected[axis.section]:
            kind = axis.section[:-1]
            known = selected[axis.section]
            raise BenchError(f"the sweep of {axis.key} names {kind} {axis.plugin!r}, which this run does not "
                             f"have.{did_you_mean(axis.plugin, known)}",
                             f"{axis.section} of this run: {', '.join(sorted(known))}; sweep one of theirs, or "
                             f"add {axis.plugin} to the run")


def plan_run(config: RunConfig, registry: Registry) -> Plan:
    """The run's cells: models x datasets x languages x seeds x protocols, at every point of its
    sweep (each point planned as a run with those values set, so its cells have the keys that
    run would give them)."""
    if not config.sweep:
        return _plan_point(config, registry)
    names = {"datasets": sorted(registry.datasets) if ALL in config.datasets else list(config.datasets),
             "protocols": sorted(registry.protocols) if ALL in config.protocols else list(config.protocols)}
    _check_sweep_targets(config, list(resolve_models(config, registry)), names["datasets"], names["protocols"])
    cells: dict[str, PlannedCell] = {}
    metrics: tuple[MetricSpec, ...] = ()
    for point in points(config.sweep):
        try:
            planned = _plan_point(config_at(config, point), registry)
        except BenchError as exc:  # a plugin's own check of a swept value: say which point
            if exc.message.startswith("sweep "):
                raise
            raise BenchError(f"sweep {point_label(point)}: {exc.message}", exc.hint) from None
        metrics = planned.metrics
        for c in planned.cells:  # a value that does not change the key (a location option) is one cell
            cells.setdefault(c.key, dataclasses.replace(c, point=point))
    return Plan(tuple(cells.values()), metrics, config.sweep)


def _plan_point(config: RunConfig, registry: Registry) -> Plan:
    models = resolve_models(config, registry)
    protocols = resolve_protocols(config, registry)
    for mname, (model, _) in models.items():
        for pname, (protocol, _) in protocols.items():
            reason = (plugin_call(protocol, "accepts", protocol.spec.accepts, model.spec.facts)
                      if protocol.spec.accepts is not None else None)
            if reason:
                raise BenchError(f"protocol {pname!r} cannot evaluate model {mname!r}: {reason}",
                                 f"leave {mname} out of --models, or run it with another protocol")

    dataset_names = sorted(registry.datasets) if ALL in config.datasets else list(config.datasets)
    datasets = {name: registry.dataset(name) for name in dataset_names}
    metrics = tuple(registry.metric(name).spec for name in config.metrics)

    cells: list[PlannedCell] = []
    for dname, dataset in datasets.items():
        options = dict(config.dataset_options.get(dname, {}))
        _check_dataset_options(dname, options, dataset.spec)
        supported = dataset.spec.languages
        if dataset.spec.list_languages is not None:  # what the configured data holds
            supported = tuple(plugin_call(dataset, "list_languages", dataset.spec.list_languages, options))
        for lang in select_languages(config.langs, supported, dname):
            data = data_fingerprint(dataset, config, lang, options)  # once per language, for every seed
            keyed_options = options if dataset.spec.fingerprint is None else {
                k: v for k, v in options.items() if k not in dataset.spec.location_options}
            for seed in config.seeds:
                for mname, (model, model_options) in models.items():
                    for pname, (protocol, protocol_options) in protocols.items():
                        cell = Cell(mname, dname, lang, seed, pname)
                        identity = cell_identity(
                            cell,
                            model_version=model.spec.version,
                            model_metadata=model.spec.metadata,
                            model_options=model_options,
                            dataset_version=dataset.spec.version,
                            dataset_options=keyed_options,
                            train=config.train,
                            model_facts=model.spec.facts,
                            protocol_version=protocol.spec.version,
                            protocol_options=protocol_options,
                            data=data,
                        )
                        cells.append(PlannedCell(cell, cell_key(identity), identity, model, dataset, model_options,
                                                 options, protocol, protocol_options))
    return Plan(tuple(cells), metrics)
