import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.api import MetricSpec
from harness.errors import BenchError
from harness.plugins import Registry, load_registry
from conftest import install_fake_distribution

PLUGIN_SOURCE = '''
from harness.api import MetricSpec
from harness.hookspecs import hookimpl
from plugins.models.hf import HFCTCModel, tiny_config


def build(request):
    from transformers import AutoModelForCTC
    config = tiny_config("wav2vec2", num_hidden_layers=1, vocab_size=request.vocab_size,
                         pad_token_id=request.blank_id)
    return HFCTCModel(AutoModelForCTC.from_config(config))


@hookimpl
def bench_register_models(register):
    from harness.api import ModelSpec
    register(ModelSpec("thirdparty-tiny", build, version="0.3", description="a model from another package"))


@hookimpl
def bench_register_metrics(register):
    register(MetricSpec("length-ratio", lambda refs, hyps: sum(map(len, hyps)) / sum(map(len, refs)), "0.3"))
'''


@pytest.fixture()
def third_party(tmp_path, monkeypatch) -> Path:
    return install_fake_distribution(tmp_path, monkeypatch, "thirdparty_bench", PLUGIN_SOURCE, "thirdparty-bench",
                                     "thirdparty", version="0.3")


def test_builtins_are_discovered_through_entry_points():
    registry = load_registry()
    assert {"tiny-wav2vec2", "tiny-hubert", "tiny-wavlm", "tiny-unispeech", "tiny-unispeech-sat"} <= set(registry.models)
    assert "synthetic" in registry.datasets and {"cer", "wer"} <= set(registry.metrics)
    assert registry.models["tiny-wav2vec2"].origin.distribution == "bench"
    assert registry.datasets["synthetic"].origin.plugin == "synthetic"
    assert "hf" in registry.schemes


def test_third_party_distribution_shows_in_list_and_runs(third_party, bench, small_config):
    code, out, _ = bench("list")
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("thirdparty-tiny"))
    assert "thirdparty-bench 0.3" in line and "a model from another package" in line
    assert any(l.startswith("length-ratio") for l in out.splitlines())
    code, out, err = bench("run", "--config", str(small_config), "--models", "thirdparty-tiny", "--langs", "de",
                           "--set", "run.metrics=['cer','length-ratio']")
    assert code == 0, err
    assert "1 cells computed" in out and "thirdparty-tiny" in out


def test_console_script_sees_the_third_party_plugin(third_party):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(third_party), *sys.path])}
    bench = Path(sys.executable).with_name("bench")
    out = subprocess.run([str(bench), "list", "--models"], env=env, capture_output=True, text=True, check=True).stdout
    assert "thirdparty-tiny" in out


def test_plugin_selection_by_environment(third_party, monkeypatch):
    monkeypatch.setenv("BENCH_DISABLE_PLUGINS", "thirdparty")
    assert "thirdparty-tiny" not in load_registry().models
    monkeypatch.delenv("BENCH_DISABLE_PLUGINS")
    monkeypatch.setenv("BENCH_PLUGINS", "thirdparty,jiwer-metrics")
    registry = load_registry()
    assert set(registry.models) == {"thirdparty-tiny"} and "synthetic" not in registry.datasets


def test_broken_plugin_is_reported_not_fatal(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    (site / "broken_bench-1.0.dist-info").mkdir(parents=True)
    (site / "broken_bench-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-bench\nVersion: 1.0\n")
    (site / "broken_bench-1.0.dist-info" / "entry_points.txt").write_text("[bench]\nbroken = no_such_module\n")
    monkeypatch.syspath_prepend(str(site))
    registry = load_registry()
    assert "tiny-wav2vec2" in registry.models
    err = capsys.readouterr().err
    assert "plugin 'broken'" in err and "BENCH_DISABLE_PLUGINS=broken" in err


def test_unknown_names_get_did_you_mean():
    registry = load_registry()
    with pytest.raises(BenchError, match=r"unknown model 'tiny-wav2vec'\. Did you mean 'tiny-wav2vec2'") as info:
        registry.model("tiny-wav2vec")
    assert "tiny-hubert" in str(info.value)  # the valid ones are listed
    with pytest.raises(BenchError, match="unknown dataset 'synthetc'. Did you mean 'synthetic'"):
        registry.dataset("synthetc")
    with pytest.raises(BenchError, match="unknown metric 'cre'. Did you mean 'cer'"):
        registry.metric("cre")


def test_duplicate_names_stop_only_the_commands_that_use_them(capsys):
    import types

    from harness.hookspecs import hookimpl

    def make(name):
        module = types.ModuleType(name)

        @hookimpl
        def bench_register_metrics(register):
            register(MetricSpec("same", lambda r, h: 0.0))
            register(MetricSpec(f"own-{name}", lambda r, h: 0.0))

        module.bench_register_metrics = bench_register_metrics
        return module

    registry = Registry()
    registry.add_plugin(make("one"), "one")
    registry.add_plugin(make("two"), "two")
    registry.collect()  # does not raise: only commands that use "same" stop
    assert registry.metric("own-one") and registry.metric("own-two")
    with pytest.raises(BenchError, match="registered twice: by one .* and by two") as info:
        registry.metric("same")
    assert "BENCH_DISABLE_PLUGINS" in info.value.hint


BAD_PLUGINS = {
    # an exception inside the register hook, after it registered something
    "raising": """
from harness.api import MetricSpec
from harness.hookspecs import hookimpl

@hookimpl
def bench_register_metrics(register):
    register(MetricSpec("half-registered", lambda r, h: 0.0))
    raise RuntimeError("boom in the hook")
""",
    # a hook implementation whose argument is misnamed (pluggy refuses it at register time)
    "misnamed-argument": """
from harness.hookspecs import hookimpl

@hookimpl
def bench_register_metrics(registry):
    pass
""",
    # a misspelled hook name, marked as a hook implementation
    "misspelled-marked": """
from harness.api import MetricSpec
from harness.hookspecs import hookimpl

@hookimpl
def bench_register_metric(register):
    register(MetricSpec("never", lambda r, h: 0.0))

@hookimpl
def bench_register_datasets(register):
    pass
""",
    # a misspelled hook name, not marked (pluggy would ignore it silently)
    "misspelled-plain": """
def bench_register_modles(register):
    pass
""",
}


@pytest.mark.parametrize("kind", sorted(BAD_PLUGINS))
def test_a_faulty_plugin_is_skipped_with_one_warning(kind, tmp_path, monkeypatch, bench, capsys):
    install_fake_distribution(tmp_path, monkeypatch, "faulty_bench", BAD_PLUGINS[kind], "faulty-bench", "faulty")
    code, out, err = bench("list", "--metrics")
    assert code == 0 and "cer" in out
    warnings = [line for line in err.splitlines() if "faulty" in line]
    assert len(warnings) == 1 and "BENCH_DISABLE_PLUGINS=faulty" in warnings[0], err
    assert "Traceback" not in err
    registry = load_registry()
    assert "tiny-wav2vec2" in registry.models and "cer" in registry.metrics
    assert "half-registered" not in registry.metrics and "never" not in registry.metrics  # taken back
    assert not registry.pm.has_plugin("faulty")
    capsys.readouterr()
    monkeypatch.setenv("BENCH_DISABLE_PLUGINS", "faulty")
    code, out, err = bench("list", "--metrics")
    assert code == 0 and "faulty" not in err


def test_two_plugins_with_one_name_only_stop_its_users(tmp_path, monkeypatch, bench, small_config):
    source = """
from harness.api import MetricSpec
from harness.hookspecs import hookimpl

@hookimpl
def bench_register_metrics(register):
    register(MetricSpec("cer", lambda r, h: 0.0))
"""
    install_fake_distribution(tmp_path, monkeypatch, "clash_bench", source, "clash-bench", "clash")
    code, out, err = bench("list", "--models")
    assert code == 0 and "metric 'cer' is registered twice" in err and "clash" in err
    code, out, err = bench("run", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "de",
                           "--metrics", "wer", "--dry-run")
    assert code == 0, err
    code, out, err = bench("run", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "de",
                           "--metrics", "cer", "--dry-run")
    assert code == 2 and "error: metric 'cer' is registered twice" in err and "hint:" in err
