"""Executors: the same matrix through local (in-process and worker processes), Ray and submitit."""

from __future__ import annotations

import pytest

from harness.store.results import ResultStore

# one thread per cell everywhere, so every executor computes with the same arithmetic
ONE_THREAD = ("--set", "run.threads=1", "--langs", "de")


def _metrics(path):
    with ResultStore(path) as store:
        return {(c.model, c.language, c.seed): (c.metrics, c.record["train"]["loss_curve"]) for c in store.cells()}


def _run(bench, config, store, *args):
    code, out, err = bench("run", "--config", str(config), "--store", str(store), *ONE_THREAD, *args)
    assert code == 0, err
    return out, err


def test_executor_options_are_checked(bench, small_config):
    code, _, err = bench("run", "--config", str(small_config), "--executor", "rey")
    assert code == 2 and "unknown executor 'rey'" in err and "Did you mean 'ray'" in err
    code, _, err = bench("run", "--config", str(small_config), "--executor", "ray", "--set", "executors.ray.cpu=2")
    assert code == 2 and "[executors.ray]: unknown option 'cpu'" in err


@pytest.mark.slow
def test_local_workers_and_ray_give_the_in_process_results(bench, small_config, tmp_path):
    _run(bench, small_config, tmp_path / "inproc.sqlite")
    reference = _metrics(tmp_path / "inproc.sqlite")
    assert len(reference) == 2

    _run(bench, small_config, tmp_path / "workers.sqlite", "--set", "executors.local.workers=2")
    assert _metrics(tmp_path / "workers.sqlite") == reference

    pytest.importorskip("ray")
    out, err = _run(bench, small_config, tmp_path / "ray.sqlite", "--executor", "ray",
                    "--set", "executors.ray.num_cpus=2")
    assert "2 cells computed" in out
    assert _metrics(tmp_path / "ray.sqlite") == reference
    with ResultStore(tmp_path / "ray.sqlite") as store:
        assert all(c.record["runtime"]["threads"] == 1 for c in store.cells())


@pytest.mark.slow
def test_submitit_local_cluster(bench, small_config, tmp_path):
    pytest.importorskip("submitit")
    out, err = _run(bench, small_config, tmp_path / "slurm.sqlite", "--models", "tiny-hubert", "--executor", "slurm",
                    "--set", "executors.slurm.cluster=\"local\"", "--set", "executors.slurm.poll_seconds=0.5",
                    "--set", f"executors.slurm.folder=\"{tmp_path / 'jobs'}\"")
    assert "1 cells computed" in out
    _run(bench, small_config, tmp_path / "inproc.sqlite", "--models", "tiny-hubert")
    assert _metrics(tmp_path / "slurm.sqlite") == _metrics(tmp_path / "inproc.sqlite")
