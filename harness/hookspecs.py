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

from typing import TYPE_CHECKING

import pluggy

PROJECT = "bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:  # pragma: no cover
    from harness.plugins import (DatasetRegister, DecoderRegister, ExecutorRegister, MetricRegister, ModelRegister,
                                 ProtocolRegister)


@hookspec
def bench_register_models(register: "ModelRegister") -> None:
    """Register model specs (``register(ModelSpec)``), schemes (``register.scheme(ModelScheme)``) and
    groups (``register.group(ModelGroup)``)."""


@hookspec
def bench_register_datasets(register: "DatasetRegister") -> None:
    """Register dataset specs with ``register(DatasetSpec)``."""


@hookspec
def bench_register_metrics(register: "MetricRegister") -> None:
    """Register metric specs with ``register(MetricSpec)``."""


@hookspec
def bench_register_executors(register: "ExecutorRegister") -> None:
    """Register executors (``register(ExecutorSpec)``): where and how cells are computed."""


@hookspec
def bench_register_protocols(register: "ProtocolRegister") -> None:
    """Register evaluation protocols (``register(ProtocolSpec)``): how a built model is trained and
    evaluated in a cell (``finetune``, ``superb``, ...)."""


@hookspec
def bench_register_decoders(register: "DecoderRegister") -> None:
    """Register decoders (``register(DecoderSpec)``): how stored CTC outputs become text
    (``greedy``, ``beam``, ``beam-lm``, ...)."""
