"""The plugin contract.

A plugin is a module (or object) exposed under the ``bench`` entry-point group that implements
any of these hooks. Each hook receives a ``register`` callable-like object; the plugin calls it
with the specs it provides::

    from harness.hookspecs import hookimpl
    from harness.api import ModelSpec

    @hookimpl
    def bench_register_models(register):
        register(ModelSpec(name="my-model", build=build_my_model, version="1.0"))
"""

from __future__ import annotations

import pluggy

from harness.registers import (DatasetRegister, DecoderRegister, ExecutorRegister, MetricRegister, ModelRegister,
                               ProtocolRegister, TrackerRegister)

PROJECT = "bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# Every hook is called once per process, through pluggy's hook caller, when the registry is
# collected (``harness.plugins.Registry.collect``): implementations may use ``tryfirst``,
# ``trylast`` and wrappers. A hook that raises takes back what its plugin registered (in any
# hook) and is reported as one warning naming the plugin; the other plugins are unaffected.


@hookspec
def bench_register_models(register: ModelRegister) -> None:
    """Register models.

    Args:
        register: call ``register(ModelSpec(...))`` for each model;
            ``register.scheme(ModelScheme(prefix, resolve))`` for a family named ``PREFIX:ARGUMENT``
            (``hf:facebook/wav2vec2-base``); ``register.group(ModelGroup(name, members))`` for a
            selection usable as ``--models NAME`` (several plugins may add to one group).
    """


@hookspec
def bench_register_datasets(register: DatasetRegister) -> None:
    """Register datasets.

    Args:
        register: call ``register(DatasetSpec(...))`` for each dataset (its ``load`` returns
            ``DatasetSplits`` of ``Utterance``; ``check``, ``fingerprint`` and ``list_languages``
            run while planning, before any cell).
    """


@hookspec
def bench_register_metrics(register: MetricRegister) -> None:
    """Register metrics.

    Args:
        register: call ``register(MetricSpec(name, compute, version, lower_is_better))``;
            ``compute(references, hypotheses)`` gets normalised text and returns one corpus-level number.
    """


@hookspec
def bench_register_executors(register: ExecutorRegister) -> None:
    """Register executors: where and how cells are computed (``local``, ``ray``, ``slurm``).

    Args:
        register: call ``register(ExecutorSpec(name, create, options))``.
    """


@hookspec
def bench_register_protocols(register: ProtocolRegister) -> None:
    """Register evaluation protocols: how a cell trains and evaluates its model (``finetune``,
    ``superb``, a linear probe, ...).

    Args:
        register: call ``register(ProtocolSpec(name, run, version, defaults, check, accepts))``;
            ``run(ProtocolRequest) -> CellOutcome`` is usually a short composition of
            :mod:`harness.engine` (see docs/engine.md).
    """


@hookspec
def bench_register_decoders(register: DecoderRegister) -> None:
    """Register decoders: how stored CTC outputs become text (``greedy``, ``beam``, ``beam-lm``, ...).

    Args:
        register: call ``register(DecoderSpec(name, build, version, defaults, tuned, ...))``;
            ``build(DecoderRequest)`` returns ``decode(log_probs, weights) -> list[str]`` (see docs/decoding.md).
    """


@hookspec
def bench_register_trackers(register: TrackerRegister) -> None:
    """Register experiment trackers: where a run's events go (``tensorboard``, ``mlflow``, ``wandb``, ...).

    Args:
        register: call ``register(TrackerSpec(name, create, description, defaults, check, check_options))``;
            ``create(TrackerRequest)`` returns an object with ``handle(event)`` and ``close()``, which
            receives the typed events of :mod:`harness.tracking` (see docs/tracking.md).
    """
