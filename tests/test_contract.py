"""The plugin contract as pluggy calls it, and first contact: what a newcomer's first commands say."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from harness.api import DatasetSpec, MetricSpec
from harness.errors import BenchError
from harness.hookspecs import hookimpl
from harness.plugins import Registry

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, function)
    return module


def test_hooks_are_called_through_pluggy_so_wrappers_and_ordering_work():
    seen: list[str] = []

    @hookimpl(wrapper=True)
    def wrap(register):  # sees every other plugin's registrations, after they are made
        result = yield
        seen.append("wrapper after " + ",".join(sorted(register._table)))
        return result

    @hookimpl(tryfirst=True)
    def first(register):
        seen.append("first")
        register(MetricSpec("one", lambda r, h: 0.0))

    @hookimpl
    def second(register):
        seen.append("second")
        register(MetricSpec("two", lambda r, h: 0.0))

    registry = Registry()
    registry.add_plugin(_module("p-second", bench_register_metrics=second), "p-second")
    registry.add_plugin(_module("p-wrap", bench_register_metrics=wrap), "p-wrap")
    registry.add_plugin(_module("p-first", bench_register_metrics=first), "p-first")
    registry.collect()
    assert seen == ["first", "second", "wrapper after one,two"]
    assert registry.metrics["one"].origin.plugin == "p-first" and registry.metrics["two"].origin.plugin == "p-second"


def test_a_failing_plugin_is_taken_back_from_every_hook_and_the_others_still_register():
    @hookimpl
    def metrics_ok(register):
        register(MetricSpec("kept-then-dropped", lambda r, h: 0.0))

    @hookimpl
    def datasets_broken(register):
        raise FileNotFoundError("no such folder: /data")

    @hookimpl
    def healthy(register):
        register(MetricSpec("healthy", lambda r, h: 0.0))

    registry = Registry()
    registry.add_plugin(_module("bad", bench_register_metrics=metrics_ok, bench_register_datasets=datasets_broken),
                        "bad")
    registry.add_plugin(_module("good", bench_register_metrics=healthy), "good")
    registry.collect()
    assert set(registry.metrics) == {"healthy"}
    (problem,) = registry.load_errors
    assert "plugin 'bad'" in problem and "bench_register_datasets" in problem and "FileNotFoundError" in problem


def test_an_exception_in_a_plugins_check_or_fingerprint_is_one_line_naming_the_plugin(bench, small_config,
                                                                                       monkeypatch):
    from harness import plugins

    def fingerprint(request):
        raise FileNotFoundError(2, "No such file or directory", "/data/de/train.tsv")

    @hookimpl
    def datasets(register):
        register(DatasetSpec("flaky", ("de",), load=lambda r: None, version="1", fingerprint=fingerprint))

    real = plugins.load_registry

    def with_flaky():
        registry = Registry()
        registry.load_entry_points()
        registry.add_plugin(_module("flaky-plugin", bench_register_datasets=datasets), "flaky-plugin", "flaky-dist",
                            "0.3")
        return registry.collect()

    monkeypatch.setattr(plugins, "load_registry", with_flaky)
    monkeypatch.setattr(plugins, "_LOADED", {})
    code, out, err = bench("run", "--config", str(small_config), "--datasets", "flaky", "--langs", "de", "--dry-run")
    monkeypatch.setattr(plugins, "load_registry", real)
    assert code == 2 and "Traceback" not in err
    assert "dataset 'flaky' (plugin 'flaky-plugin' from flaky-dist 0.3): its fingerprint raised FileNotFoundError" in err
    assert "BENCH_DISABLE_PLUGINS=flaky-plugin" in err


def _bench(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_dry_run_makes_the_checks_of_a_real_run_and_exits_as_it_would(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    dry = _bench("run", "--dry-run", "--models", "hf:/missing", "--langs", "es", "--seeds", "1", cwd=tmp_path, env=env)
    assert not (tmp_path / ".bench").exists()  # the dry run created nothing
    real = _bench("run", "--models", "hf:/missing", "--langs", "es", "--seeds", "1", cwd=tmp_path, env=env)
    assert dry.returncode == real.returncode == 2
    error = [line for line in real.stderr.splitlines() if line.startswith("error:")]
    assert error and error[0] in dry.stderr
    bad_executor = _bench("run", "--dry-run", "--set", "executors.ray.adress='x'", "--executor", "ray", cwd=tmp_path,
                          env=env)
    assert bad_executor.returncode == 2 and "unknown option 'adress'" in bad_executor.stderr


def test_outside_a_checkout_bench_runs_the_documented_default_study(tmp_path):
    from harness.plan.config import PACKAGED_CONFIG

    assert PACKAGED_CONFIG.read_text() == (ROOT / "bench.toml").read_text()  # one default, shipped with the package
    from harness.plan.config import load_config

    assert load_config(ROOT / "bench.toml").store == ROOT / ".bench" / "results.sqlite"  # paths from the link's folder
    done = _bench("run", "--dry-run", cwd=tmp_path, env={"BENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert "36 cells, 0 stored, 36 to compute (preset tiny-study, 150 updates each" in done.stdout
    for model in ("tiny-phone-es", "tiny-phone-ru", "tiny-phone-multi", "tiny-wav2vec2"):
        assert model in done.stdout
    init = _bench("init", cwd=tmp_path)
    assert init.returncode == 0 and (tmp_path / "bench.toml").read_text() == PACKAGED_CONFIG.read_text()
    again = _bench("init", cwd=tmp_path)
    assert again.returncode == 2 and "exists already" in again.stderr and "--force" in again.stderr


def test_bench_plugins_naming_no_installed_plugin_says_so(tmp_path):
    listed = _bench("list", cwd=tmp_path, env={"BENCH_PLUGINS": "nonexistent"})
    assert "BENCH_PLUGINS names 'nonexistent', which is not an installed bench plugin" in listed.stderr
    assert "no bench plugins found" not in listed.stderr
    typo = _bench("list", "--datasets", cwd=tmp_path, env={"BENCH_PLUGINS": "synthtic"})
    assert "Did you mean 'synthetic'?" in typo.stderr


@pytest.mark.parametrize("value", ["[-1]", "-1", "[0, -2]"])
def test_negative_seeds_are_refused_however_they_are_given(bench, small_config, value):
    code, _, err = bench("run", "--config", str(small_config), "--dry-run", "--set", f"run.seeds={value}")
    assert code == 2 and "run.seeds" in err
    with pytest.raises(BenchError):
        from harness.plan.config import load_config

        load_config(small_config, None, {"run": {"seeds": [-1]}})
