"""The CI regression workflow of docs/ci.md is what .ci/run runs, against a committed baseline that
matches preset ``ci``."""

from __future__ import annotations

import json
import re

from conftest import REPO
from harness.report.compare import load_results
from harness.plan.config import load_config


def documented_workflow_commands() -> list[str]:
    text = (REPO / "docs" / "ci.md").read_text()
    workflow = text[text.index("name: bench regression"):]
    workflow = workflow[:workflow.index("```")]
    return [m.strip() for m in re.findall(r"- run: (bench .*)", workflow)]


def test_ci_runs_the_documented_workflow_against_the_committed_baseline():
    commands = documented_workflow_commands()
    assert [c.split()[1] for c in commands] == ["run", "report", "compare"]
    assert "ci/baseline.json" in commands[2]
    script = (REPO / ".ci" / "run").read_text().splitlines()
    for command in commands:  # exactly as printed, in this order, after pytest
        assert command in [line.strip() for line in script], command
    positions = [next(i for i, line in enumerate(script) if line.strip() == c) for c in commands]
    assert positions == sorted(positions) and positions[0] > next(i for i, l in enumerate(script) if "pytest" in l)


def test_committed_baseline_covers_preset_ci():
    config = load_config(REPO / "bench.toml", preset="ci")
    baseline = load_results(REPO / "ci" / "baseline.json")
    assert baseline, "ci/baseline.json holds no results"
    cells = {(model, dataset, language) for model, dataset, language, _split, _metric in baseline}
    assert cells == {(m, d, lang) for m in config.models for d in config.datasets for lang in config.langs}
    metrics = {metric for *_, metric in baseline}
    assert set(config.metrics) <= metrics
    assert all(row["n"] == len(config.seeds) for row in json.loads((REPO / "ci" / "baseline.json").read_text())["summary"])
