"""Executors: where the cells of a matrix are computed.

Each is a plugin registered through the ``bench`` entry-point group, like models and
datasets: ``local`` (this process, or one worker process per GPU), ``ray`` (one Ray task per
cell, on a local instance or a cluster) and ``slurm`` (one submitit job per cell). All of
them send results back to the process that runs ``bench run``, which alone writes the results
store; see :class:`harness.api.ExecutorSpec` for the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from harness.run.cell import CellFailure, CellResult, CellTask
from harness.errors import BenchError, did_you_mean
from harness.run.progress import Progress

OnResult = Callable[[CellResult | CellFailure], None]


class Executor(Protocol):
    """What ``ExecutorSpec.create`` returns: ``run`` pulls cell tasks (pulling claims a cell) and
    hands each result or failure to ``on_result`` in the calling process as it arrives."""

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


def run_bounded(
    tasks: Iterator[CellTask],
    limit: int,
    submit: Callable[[CellTask], Hashable],
    wait: Callable[[Sequence[Hashable]], Sequence[Hashable]],
    collect: Callable[[Hashable, CellTask], CellResult | CellFailure],
    on_result: OnResult,
    cancel: Callable[[Hashable], None] | None = None,
) -> None:
    """Keep at most ``limit`` cells in flight until ``tasks`` runs out and all have come back.

    ``submit`` starts a task and returns a handle; ``wait`` blocks until at least one of the
    given handles has finished and returns those; ``collect`` turns a finished handle into the
    cell's result (or a failure, when the worker itself died). Tasks are pulled only when there
    is room, because pulling one claims its cell. When the run is interrupted (Ctrl-C, SIGTERM)
    ``cancel`` stops each cell still in flight: their results would have nobody to store them,
    and the next run resumes them from their in-cell checkpoints.
    """
    in_flight: dict[Hashable, CellTask] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(in_flight) < limit:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                else:
                    in_flight[submit(task)] = task
            if not in_flight:
                return
            for handle in wait(list(in_flight)):
                on_result(collect(handle, in_flight.pop(handle)))
    except BaseException:
        if cancel is not None:
            for handle in in_flight:
                try:
                    cancel(handle)
                except Exception:  # best effort: the interruption itself is what the user sees
                    pass
        raise
