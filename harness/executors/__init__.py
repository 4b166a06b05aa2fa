"""Executors: where the cells of a matrix are computed.

Each is a plugin registered through the ``bench`` entry-point group, like models and
datasets: ``local`` (this process, or one worker process per GPU), ``ray`` (one Ray task per
cell, on a local instance or a cluster) and ``slurm`` (one submitit job per cell). All of
them send results back to the process that runs ``bench run``, which alone writes the results
store; see :class:`harness.api.ExecutorSpec` for the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from harness.cellwork import CellFailure, CellResult, CellTask
from harness.errors import BenchError, did_you_mean
from harness.progress import Progress

OnResult = Callable[[CellResult | CellFailure], None]


class Executor(Protocol):
    def run(self, tasks: Iterator[CellTask], on_result: OnResult, progress: Progress | None) -> None: ...


def check_options(name: str, options: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    """Options merged over defaults; unknown keys and wrongly typed values are user errors."""
    for key in options:
        if key not in known:
            raise BenchError(f"[executors.{name}]: unknown option {key!r}.{did_you_mean(key, known)}",
                             f"options of {name}: {', '.join(known)}")
    out = dict(known)
    for key, value in options.items():
        default = known[key]
        if default is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)):
            raise BenchError(f"[executors.{name}] {key} must be a {type(default).__name__}, got {value!r}",
                             "fix it in bench.toml or with --set")
        out[key] = value
    return out
