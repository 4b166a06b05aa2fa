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
