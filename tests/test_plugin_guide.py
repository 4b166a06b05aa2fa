"""The plugin author's guide (docs/plugins.md) runs as printed: its package (pyproject.toml with the
``bench`` entry point, a plain PyTorch CTC model, a folder-of-WAVs dataset, a metric) is
written from the page, installed, and used by ``bench run``."""

from __future__ import annotations

import re
import runpy
import tomllib

from conftest import REPO, install_fake_distribution

MARKER = re.compile(r"<!-- plugin-example: (\S+) -->\n```\w*\n(.*?)\n```", re.S)


GUIDE = REPO / "docs" / "plugins.md"


def guide_example() -> dict[str, str]:
    files = dict(MARKER.findall(GUIDE.read_text()))
    assert set(files) == {"pyproject.toml", "bench_example.py", "make_tones.py"}, sorted(files)
    return files


def test_guide_plugin_package_runs_as_printed(tmp_path, monkeypatch, bench):
    files = guide_example()
    package = tmp_path / "package"
    package.mkdir()
    for name, text in files.items():
        (package / name).write_text(text + "\n")
    project = tomllib.loads(files["pyproject.toml"])
    ((entry_point, module),) = project["project"]["entry-points"]["bench"].items()
    assert project["tool"]["setuptools"]["py-modules"] == [module]
    install_fake_distribution(tmp_path, monkeypatch, module, files[f"{module}.py"], project["project"]["name"],
                              entry_point, project["project"]["version"])
    runpy.run_path(str(package / "make_tones.py"))["main"](str(tmp_path / "tones"))

    code, out, err = bench("list")
    assert code == 0 and "bench-example 0.1.0" in out, err
    (tmp_path / "bench.toml").write_text(f"""
[run]
store = "results.sqlite"
[train]
steps = 4
batch_seconds = 8.0
[datasets.wav-folder]
root = "{tmp_path / 'tones'}"
""")
    args = ("run", "--config", str(tmp_path / "bench.toml"), "--models", "conv-ctc", "--datasets", "wav-folder",
            "--langs", "en", "--seeds", "1", "--metrics", "cer,sentence-accuracy", "--no-progress")
    code, out, err = bench(*args)
    assert code == 0, err
    assert "1 cells computed" in out and "sentence-accuracy=" in err + out
    # the declared options are checked before any cell
    code, out, err = bench(*args, "--set", "models.conv-ctc.hiden=64")
    assert code == 2 and "Did you mean 'hidden'" in err
    code, out, err = bench(*args[:-1], "--set", "models.conv-ctc.hidden=64", "--dry-run")
    assert code == 0, err


PROBE = re.compile(r"<!-- linear-probe: (\S+) -->\n```\w*\n(.*?)\n```", re.S)


def test_guide_linear_probe_protocol_runs_as_printed(tmp_path, monkeypatch, bench, small_config):
    """The third-party protocol of the guide: written only against the public API, under 60 lines,
    installed from the page and run; only its linear layer trains, on the layer it names."""
    import ast

    files = dict(PROBE.findall(GUIDE.read_text()))
    assert set(files) == {"pyproject.toml", "bench_linear_probe.py"}, sorted(files)
    source = files["bench_linear_probe.py"]
    assert len(source.splitlines()) < 60
    for node in ast.walk(ast.parse(source)):  # public names only
        if isinstance(node, ast.ImportFrom) and node.module.startswith("harness"):
            assert node.module in ("harness.api", "harness.engine", "harness.errors", "harness.hookspecs")
            assert not any(a.name.startswith("_") for a in node.names)
    project = tomllib.loads(files["pyproject.toml"])
    ((entry_point, module),) = project["project"]["entry-points"]["bench"].items()
    install_fake_distribution(tmp_path, monkeypatch, module, source, project["project"]["name"], entry_point,
                              project["project"]["version"])
    code, out, err = bench("list", "--protocols")
    assert code == 0 and "linear-probe" in out and "bench-linear-probe 0.1.0" in out, err
    args = ("run", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "de", "--no-progress",
            "--protocols", "linear-probe", "--set", "train.steps=30", "--set", "protocols.linear-probe.layer=2")
    code, out, err = bench(*args)
    assert code == 0, err
    from harness.store.results import ResultStore

    with ResultStore(small_config.parent / "results.sqlite") as store:
        (cell,) = store.cells()
    assert cell.protocol == "linear-probe" and cell.record.identity["protocol"]["options"] == {"layer": 2, "lr": 1e-3}
    train = cell.record.train
    assert train.upstream_layers == 5 and train.trainable_parameters == (train.upstream_dim + 1) * train.vocab_size
    assert len(train.loss_curve) == 2 and train.loss_curve[1] < train.loss_curve[0]
    # a layer the model does not have fails the cell with the plugin's message; bad options fail before any cell
    code, out, err = bench(*args[:-1], "protocols.linear-probe.layer=7", "--seeds", "2")
    assert "layer 7 does not exist" in err + out
    code, _, err = bench(*args[:-1], "protocols.linear-probe.layer=true")
    assert code == 2 and "layer must be a whole number" in err
