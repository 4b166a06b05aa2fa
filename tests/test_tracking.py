"""Experiment trackers: typed events where cells run, read back with each library's own reader;
a failing tracker is warned about once and fails nothing; user errors before any work."""

from __future__ import annotations

import glob
import importlib.util
import json
import struct
import time
from pathlib import Path

import pytest

from conftest import install_fake_distribution
from harness.store.results import ResultStore

#: a tiny matrix: one model, one or two languages, one seed, 30 updates (loss logged at 25 and 30),
#: dev scored every 10 updates during training (dev curve events)
TINY = ("--models", "tiny-wav2vec2", "--seeds", "1", "--no-progress", "--set", "train.steps=30",
        "--set", "train.eval_every=10", "--set", "run.threads=1")


def _need(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'bench[{extra}]'; .ci/run installs it)")


def _stored(store: Path) -> dict:
    with ResultStore(store, readonly=True) as results:
        return {c.key: c for c in results.cells()}


# --------------------------------------------------------------------------- user errors, before any work
def test_unknown_tracker_missing_extra_and_bad_options_are_one_line_errors(bench, small_config, monkeypatch):
    code, _, err = bench("run", "--config", str(small_config), "--dry-run", "--set", 'run.trackers=["tensorbord"]')
    assert code == 2 and "unknown tracker 'tensorbord'. Did you mean 'tensorboard'?" in err
    assert "bench list --trackers" in err

    code, _, err = bench("run", "--config", str(small_config), "--dry-run", "--set", 'run.trackers=["tensorboard"]',
                         "--set", 'trackers.tensorboard.log_dir="x"')
    assert code == 2 and "[trackers.tensorboard]: unknown option 'log_dir'. Did you mean 'logdir'?" in err

    code, _, err = bench("run", "--config", str(small_config), "--dry-run", "--set", 'run.trackers=["wandb"]',
                         "--set", "trackers.wandb.mode=3")
    assert code == 2 and "[trackers.wandb] mode must be a str, got 3" in err
    code, _, err = bench("run", "--config", str(small_config), "--dry-run", "--set", 'run.trackers=["wandb"]',
                         "--set", 'trackers.wandb.mode="onlin"')
    assert code == 2 and "mode must be \"offline\", \"online\" or \"disabled\"" in err

    code, _, err = bench("run", "--config", str(small_config), "--dry-run", "--set", 'trackers.mlfow.experiment="x"')
    assert code == 2 and "[trackers.mlfow] names no registered tracker. Did you mean 'mlflow'?" in err

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    code, _, err = bench("run", "--config", str(small_config), "--dry-run", "--set", 'run.trackers=["mlflow"]')
    assert code == 2 and "tracker 'mlflow' needs the package(s) mlflow" in err
    assert "hint: pip install 'bench[mlflow]'" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_bench_list_shows_the_trackers_and_their_extras(bench):
    code, out, _ = bench("list", "--trackers")
    assert code == 0
    for name, option in (("tensorboard", "logdir=''"), ("mlflow", "experiment='bench'"), ("wandb", "mode='offline'")):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert option in out and "bench 0.1.0" in line


# --------------------------------------------------------------------------- the dispatcher
class _Recorder:
    def __init__(self, delay: float = 0.0, fail_on: type | None = None) -> None:
        self.events: list = []
        self.delay, self.fail_on, self.closed = delay, fail_on, False

    def handle(self, event) -> None:
        if self.fail_on is not None and isinstance(event, self.fail_on):
            raise RuntimeError("tracking server unreachable")
        time.sleep(self.delay)
        self.events.append(event)

    def close(self) -> None:
        self.closed = True


def test_tracker_set_hands_events_over_on_its_thread_in_order_and_isolates_a_failing_tracker():
    from harness.run.tracking import TrackerSet

    slow, failing = _Recorder(delay=0.01), _Recorder(fail_on=str)
    seen: list[tuple[str, str]] = []
    tracking = TrackerSet([("slow", slow), ("failing", failing)], warn=lambda who, line: seen.append((who, line)))
    start = time.perf_counter()
    for i in range(50):
        tracking.emit(i)
    emitted = time.perf_counter() - start
    tracking.emit("boom")
    tracking.emit(99)
    warnings = tracking.close()
    # the caller only queued 50 events (the slow tracker takes 0.5 s for them, on its own thread)
    assert emitted < 0.1
    assert slow.events == [*range(50), "boom", 99] and slow.closed
    assert failing.events == list(range(50)) and not failing.closed  # skipped from its failure on
    assert [who for who, _ in warnings] == ["failing"] and seen == warnings
    line = warnings[0][1]
    assert "tracker 'failing' failed while handling str (RuntimeError: tracking server unreachable)" in line
    assert "[trackers.failing]" in line and "run.trackers" in line and "\n" not in line


def test_warn_once_says_each_trackers_problem_once():
    from harness.run.tracking import WarnOnce

    lines: list[str] = []
    warn = WarnOnce(lines.append)
    for _ in range(3):
        warn("mlflow", "warning: mlflow broke")
    warn("wandb", "warning: wandb broke")
    assert lines == ["warning: mlflow broke", "warning: wandb broke"]


# --------------------------------------------------------------------------- TensorBoard and MLflow, worker processes
@pytest.mark.slow
def test_tensorboard_and_mlflow_read_back_what_two_worker_processes_logged(bench, small_config, tmp_path):
    """The issue's check: event files and an MLflow store that the libraries' own readers load with
    the stored numbers, written by the cells' own worker processes (local executor, 2 workers)."""
    _need("tensorboard", "tensorboard")
    _need("mlflow", "mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from harness.plan.cells import Cell
    from harness.tracking import cell_path

    store = tmp_path / "results.sqlite"
    code, out, err = bench("run", "--config", str(small_config), *TINY, "--langs", "de,es", "--store", str(store),
                           "--set", 'run.trackers=["tensorboard","mlflow"]', "--set", "executors.local.workers=2")
    assert code == 0, err
    assert "2 cells computed" in out and "warning" not in err
    cells = _stored(store)
    assert len(cells) == 2
    root = tmp_path / "tracking"
    for key, cell in cells.items():
        events = EventAccumulator(str(root / "tensorboard" / cell_path(Cell(cell.model, cell.dataset, cell.language,
                                                                               cell.seed), key)))
        events.Reload()
        loss = events.Scalars("train/loss")
        assert [e.step for e in loss] == [25, 30]
        assert [e.value for e in loss] == pytest.approx(list(cell.record.train.loss_curve), abs=1e-4)
        assert all(0 < e.value < 1 for e in events.Scalars("train/lr"))
        dev = events.Scalars("train/dev_cer")
        assert [e.step for e in dev] == [u for u, _ in cell.record.train.dev_curve] == [10, 20, 30]
        assert [e.value for e in dev] == pytest.approx([v for _, v in cell.record.train.dev_curve], abs=1e-4)
        for split in ("dev", "test"):
            for metric in ("cer", "wer"):
                (point,) = events.Scalars(f"{split}/{metric}")
                assert point.step == 30 and point.value == pytest.approx(cell.metrics[split][metric], abs=1e-6)

    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["bench.kind"] == "run"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["cells_computed"] == 2
    by_key = {r.data.tags["bench.key"]: r for r in runs if r.data.tags["bench.kind"] == "cell"}
    assert set(by_key) == set(cells)
    for key, run in by_key.items():
        cell = cells[key]
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"tiny-wav2vec2 / synthetic:{cell.language} / seed 0"
        params = run.data.params  # the cell's identity, flattened
        assert params["cell.language"] == cell.language and params["train.steps"] == "30"
        assert params["model.version"] == cell.record.identity["model"]["version"]
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in history] == [25, 30]
        assert [m.value for m in history] == pytest.approx(list(cell.record.train.loss_curve), abs=1e-4)
        assert run.data.metrics["test/cer"] == pytest.approx(cell.metrics["test"]["cer"])
        assert run.data.metrics["dev/wer"] == pytest.approx(cell.metrics["dev"]["wer"])
        record = client.download_artifacts(run.info.run_id, "record.json", str(tmp_path / key))
        assert json.loads(Path(record).read_text())["identity"] == cell.record.identity

    # bench report logs its files as the artifacts of a run of their own
    selection = [a for a in TINY if a != "--no-progress"]
    code, _, err = bench("report", "--config", str(small_config), *selection, "--langs", "de,es", "--store",
                         str(store), "--set", 'run.trackers=["mlflow"]', "--out", str(tmp_path / "reports"))
    assert code == 0, err
    (report,) = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags["bench.kind"] == "report"]
    artifacts = {a.path for a in client.list_artifacts(report.info.run_id)}
    assert {"matrix.csv", "matrix.json", "report.html"} <= artifacts


# --------------------------------------------------------------------------- W&B offline
def wandb_records(path: Path):
    """The records of a W&B ``.wandb`` file (LevelDB-style log of 32 KiB blocks holding
    ``wandb_internal_pb2.Record`` protobufs), parsed with wandb's own protobuf classes."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or last of several
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        else:  # first or middle
            pending += chunk


@pytest.mark.slow
def test_wandb_offline_run_per_cell_reads_back(bench, small_config, tmp_path, monkeypatch):
    _need("wandb", "wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    store = tmp_path / "results.sqlite"
    code, out, err = bench("run", "--config", str(small_config), *TINY, "--langs", "es", "--store", str(store),
                           "--set", 'run.trackers=["wandb"]', "--set", "executors.local.workers=1")
    assert code == 0, err
    (cell,) = _stored(store).values()
    (path,) = glob.glob(str(tmp_path / "tracking" / "wandb" / "wandb" / "offline-run-*" / "run-*.wandb"))
    history: dict[str, list] = {}
    summary: dict[str, float] = {}
    run = None
    for record in wandb_records(Path(path)):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            for name, value in items.items():
                if not name.startswith("_"):
                    history.setdefault(name, []).append((items["_step"], value))
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    assert run is not None and run.display_name == "tiny-wav2vec2 / synthetic:es / seed 0" and run.job_type == "cell"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["bench_key"] == cell.key and config["cell"]["language"] == "es"
    assert [s for s, _ in history["train/loss"]] == [25, 30]
    assert [v for _, v in history["train/loss"]] == pytest.approx(list(cell.record.train.loss_curve), abs=1e-4)
    assert [s for s, _ in history["train/dev_cer"]] == [10, 20, 30]
    assert summary["test/cer"] == pytest.approx(cell.metrics["test"]["cer"])
    assert summary["dev/wer"] == pytest.approx(cell.metrics["dev"]["wer"])


# --------------------------------------------------------------------------- a failing tracker
BROKEN_TRACKER = '''
from harness.api import Tracker, TrackerSpec
from harness.hookspecs import hookimpl
from harness.tracking import TrainingUpdate, CellFinished


class Broken(Tracker):
    def __init__(self, request):
        self.folder = request.directory

    def handle(self, event):
        if isinstance(event, TrainingUpdate):
            raise ConnectionError("tracking server refused the connection")
        if isinstance(event, CellFinished):  # never reached: skipped after its failure
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / event.key).touch()


@hookimpl
def bench_register_trackers(register):
    register(TrackerSpec("broken", Broken, "raises on every loss"))
'''


@pytest.mark.slow
def test_a_tracker_that_raises_is_warned_about_once_and_fails_no_cell(bench, small_config, tmp_path, monkeypatch):
    """Two cells in two worker processes, each of whose tracker raises: one warning line for the run,
    every result stored (the same as without the tracker)."""
    install_fake_distribution(tmp_path, monkeypatch, "bench_broken_tracker", BROKEN_TRACKER, "bench-broken-tracker",
                              "broken")
    store = tmp_path / "results.sqlite"
    code, out, err = bench("run", "--config", str(small_config), *TINY, "--langs", "de,es", "--store", str(store),
                           "--set", 'run.trackers=["broken"]', "--set", "executors.local.workers=2")
    assert code == 0, err
    assert "2 cells computed" in out
    warnings = [line for line in err.splitlines() if "tracker 'broken'" in line]
    assert len(warnings) == 1, err
    assert ("tracker 'broken' failed while handling TrainingUpdate (ConnectionError: tracking server refused the "
            "connection)") in warnings[0]
    assert "leave 'broken' out of run.trackers" in warnings[0]
    cells = _stored(store)
    assert len(cells) == 2 and all(c.metrics["test"]["cer"] >= 0 for c in cells.values())
    assert not (tmp_path / "tracking" / "broken").exists()


# --------------------------------------------------------------------------- pre-training and heartbeats
PRETRAIN = """
[models.micro-es]
from = "tiny-phone-es"
pretrain_minutes = 0.4
pretrain_steps = 30
pretrain_batch_seconds = 4.0
"""


@pytest.mark.slow
def test_no_progress_logs_heartbeats_during_pretraining_and_trackers_get_its_loss(bench, small_config, tmp_path):
    _need("tensorboard", "tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tmp_path / "bench.toml"
    config.write_text(small_config.read_text() + PRETRAIN)
    code, out, err = bench("run", "--config", str(config), "--models", "micro-es", "--langs", "es", "--no-progress",
                           "--set", "train.steps=3", "--set", "run.heartbeat_seconds=0.3",
                           "--set", 'run.trackers=["tensorboard"]', "--set", "executors.local.workers=1")
    assert code == 0, err
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("pre-training tiny-phone-es"))
    end = next(i for i, line in enumerate(lines) if line.startswith("pre-trained tiny-phone-es"))
    beats = [line for line in lines[start:end] if line.startswith("heartbeat ")]
    assert beats, err
    assert all("preparing model micro-es for" in line and "0 of 1 cells done" in line for line in beats)
    assert any("train " in line and "/30" in line for line in beats)  # the loop's stage: updates done of 30
    events = EventAccumulator(str(tmp_path / "tracking" / "tensorboard" / "pretraining" / "micro-es"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [25, 30]


def test_heartbeats_come_only_after_the_set_silence(capsys):
    import io

    from harness.run.progress import Progress

    stream = io.StringIO()
    progress = Progress(3, enabled=False, stream=stream, heartbeat_seconds=0.2)
    with progress.activity("preparing model m"):
        stage = progress.stage("train", 30)
        stage.advance(12)
        stage.set_postfix(loss="2.345")
        time.sleep(0.5)
        for _ in range(4):  # a line every 0.1 s: no heartbeat between them
            progress.log("a line")
            time.sleep(0.1)
    progress.close()
    lines = stream.getvalue().splitlines()
    beats = [i for i, line in enumerate(lines) if line.startswith("heartbeat")]
    assert beats and beats[-1] < lines.index("a line")
    assert "preparing model m for 0 s; train 12/30 (loss 2.345)" in lines[beats[0]]


# --------------------------------------------------------------------------- the guide's tracker example
def _guide_example() -> str:
    import re

    from conftest import REPO

    text = (REPO / "docs" / "tracking.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"<!-- tracker-example: bench_jsonl_tracker.py -->\n```python\n(.*?)```", text, re.S)
    return code


@pytest.mark.slow
def test_the_guides_tracker_example_works_as_printed(bench, small_config, tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "bench_jsonl_tracker", _guide_example(), "bench-jsonl-tracker",
                              "jsonl")
    store = tmp_path / "results.sqlite"
    code, out, err = bench("run", "--config", str(small_config), *TINY, "--langs", "es", "--store", str(store),
                           "--set", 'run.trackers=["jsonl"]', "--set", "executors.local.workers=1")
    assert code == 0, err
    (cell,) = _stored(store).values()
    rows = [json.loads(line) for line in (tmp_path / "tracking" / "jsonl" / f"{cell.key}.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows if r["event"] == "TrainingUpdate"] == [25, 30]
    assert [r["loss"] for r in rows if r["event"] == "TrainingUpdate"] == pytest.approx(
        list(cell.record.train.loss_curve), abs=1e-4)
    (finished,) = [r for r in rows if r["event"] == "CellFinished"]
    assert finished["test"] == pytest.approx(cell.metrics["test"])
