"""Shared fixtures: an isolated cache/store per test session, tiny data, CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a hub from tests
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_plugin_registry():
    """Each test finds its plugins anew (tests patch the loader or install plugins)."""
    from harness import plugins

    plugins._LOADED.clear()
    yield
    plugins._LOADED.clear()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One synthetic-speech cache for the whole session (synthesis happens once per language)."""
    path = tmp_path_factory.mktemp("bench-cache")
    return path


@pytest.fixture()
def bench(cache_dir, capsys, monkeypatch):
    """Run the ``bench`` CLI in-process; returns (exit code, stdout, stderr)."""
    from harness.cli.main import main

    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache_dir))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


SMALL_TOML = """
[run]
models = ["tiny-wav2vec2", "tiny-hubert"]
datasets = ["synthetic"]
langs = ["de", "es"]
seeds = 1
store = "results.sqlite"
report_dir = "reports"

[train]
steps = 3
batch_seconds = 8.0

[datasets.synthetic]
train_minutes = 0.3
dev_minutes = 0.1
test_minutes = 0.1
"""


@pytest.fixture()
def small_config(tmp_path) -> Path:
    """A bench.toml for seconds-long runs (3 updates on ~20 s of audio per language)."""
    path = tmp_path / "bench.toml"
    path.write_text(SMALL_TOML)
    return path


def install_fake_distribution(root: Path, monkeypatch, module: str, source: str, dist: str, entry_point: str,
                              version: str = "1.0") -> Path:
    """A separately installed distribution (dist-info + module, as pip lays them out) on sys.path,
    exposing ``module`` under the ``bench`` entry-point group as ``entry_point``."""
    site = root / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[bench]\n{entry_point} = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    return site
