"""The ``slurm`` executor: one Slurm job per cell, submitted with submitit.

Jobs run ``compute_cell`` on the cluster's nodes (which must see the same Python environment
and the cache directory, as on any shared-filesystem cluster) and their results come back
through submitit's job folder to the ``bench run`` process, which writes the store. A cell
is claimed when its job is submitted; at most ``max_in_flight`` jobs are queued at a time.
``cluster = "local"`` runs the jobs as local processes (for trying a set-up without Slurm).

Preemption and time limits: a job whose cell is stopped (Slurm's ``--signal`` notice, which
submitit asks for as SIGUSR2 before the end, then a requeue; or ``scontrol requeue``) starts
again under the same job id and the cell resumes from its in-cell checkpoint (kept in the cache
directory, which the nodes share). SIGTERM inside a job is left to submitit, which ignores it
(Slurm sends it to every process before killing or requeuing a job): the cell computes on
until the job ends, and its latest checkpoint is what a requeued job resumes from.
"""

from __future__ import annotations

import dataclasses

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.api import ExecutorSpec
from harness.run.cell import CellFailure, CellResult, CellTask, compute_cell
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from . import OnResult, check_options, run_bounded

DEFAULTS: dict[str, Any] = {
    "folder": "",           # submitit's job folder (default: <cache_dir>/slurm)
    "cluster": "",          # "" = Slurm when available; "local" or "debug" for trying it out
    "partition": "",
    "timeout_min": 240,
    "gpus_per_node": 1,
    "cpus_per_task": 8,
    "mem_gb": 32,
    "max_in_flight": 64,
    "poll_seconds": 5.0,
    "additional_parameters": {},  # passed to sbatch as-is, e.g. {account = "proj"}
}


class SlurmCell:
    """What a job runs: one cell, then where it ran added to its record. It is *checkpointable* for
    submitit (a ``checkpoint`` method): on Slurm's preemption or time-limit notice submitit requeues
    the job, which resumes the cell from its in-cell checkpoint."""

    def __call__(self, task: CellTask):
        import os
        import socket

        result = compute_cell(task)
        if isinstance(result, CellResult):
            node = {"executor": "slurm", "host": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                    "job_id": os.environ.get("SLURM_JOB_ID", ""),
                    "restarts": int(os.environ.get("SLURM_RESTART_COUNT") or 0)}
            result = dataclasses.replace(result, record=dataclasses.replace(result.record, node=node))
        return result

    def checkpoint(self, task: CellTask):
        import submitit

        return submitit.helpers.DelayedSubmission(self, task)  # the same cell again; it resumes by itself


def submission_error(exc: BaseException, options: Mapping[str, Any]) -> BenchError:
    """Slurm refused a job (sbatch failed): the controller's words and the options to look at."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else type(exc).__name__)
    asked = ", ".join(f"{key}={options[key]!r}" for key in ("partition", "cpus_per_task", "mem_gb", "gpus_per_node",
                                                              "timeout_min") if options.get(key) not in ("", None))
    extra = options.get("additional_parameters") or {}
    return BenchError(f"Slurm refused the job: {said} (asked for {asked}"
                      + (f", additional_parameters={dict(extra)!r}" if extra else "") + ")",
                      "fix [executors.slurm] (partition, cpus_per_task, mem_gb, gpus_per_node, timeout_min, "
                      "additional_parameters) to what the cluster offers: `sinfo` lists its partitions and nodes")


class SlurmExecutor:
    def __init__(self, options: Mapping[str, Any], config) -> None:
        self.options = check_options("slurm", options, DEFAULTS)
        self.config = config

    def run(self, tasks: Iterator[CellTask], on_result: OnResult, progress) -> None:
        try:
            import submitit
        except ImportError:
            raise BenchError("the slurm executor needs submitit, which is not installed",
                             "pip install 'bench[slurm]' (or pip install submitit)") from None
        opts = self.options
        folder = Path(opts["folder"]).expanduser() if opts["folder"] else self.config.cache_dir / "slurm"
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=opts["cluster"] or None)
        params: dict[str, Any] = {"timeout_min": opts["timeout_min"], "cpus_per_task": opts["cpus_per_task"],
                                  "mem_gb": opts["mem_gb"]}
        if executor.cluster == "slurm":
            params.update(gpus_per_node=opts["gpus_per_node"], slurm_additional_parameters=opts["additional_parameters"])
            if opts["partition"]:
                params["slurm_partition"] = opts["partition"]
        executor.update_parameters(**params)

        def submit(task: CellTask):
            executor.update_parameters(name=f"bench-{task.cell.model}-{task.cell.language}-{task.cell.seed}")
            try:
                job = executor.submit(SlurmCell(), task)
            except Exception as exc:  # sbatch refused it: the options, not the cell, are wrong
                raise submission_error(exc, opts) from None
            if progress:
                progress.log(f"submitted {task.cell.label()}")
            return job

        def wait(jobs):
            while True:
                finished = [job for job in jobs if job.done()]
                if finished:
                    return finished
                time.sleep(opts["poll_seconds"])

        def collect(job, task: CellTask):
            try:
                return job.result()
            except Exception as exc:  # the job died: timeout, node failure, cancelled
                return CellFailure(task.key, task.cell, "error", f"job {job.job_id} failed: {type(exc).__name__}",
                                   str(exc)[-4000:])

        run_bounded(tasks, opts["max_in_flight"], submit, wait, collect, on_result,
                    cancel=lambda job: job.cancel(check=False))

@hookimpl
def bench_register_executors(register) -> None:
    register(ExecutorSpec("slurm", SlurmExecutor, "Slurm jobs through submitit, one per cell", tuple(DEFAULTS)))
