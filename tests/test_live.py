"""The live matrix: what it counts (scores so far, seeds, failures, cells under way, ETA) and how it is drawn."""

from __future__ import annotations

import io

import pytest

from harness.plan.cells import Cell
from harness.run.live import MatrixState, StageState, duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cells(models=("a", "b"), langs=("es", "ru"), seeds=(0, 1, 2)):
    return [Cell(m, "synthetic", lang, s) for m in models for lang in langs for s in seeds]


def test_the_matrix_counts_scores_seeds_failures_and_stored_cells():
    cells = _cells()
    stored = {cells[0]: 0.40, cells[1]: 0.42}  # a/es seeds 0 and 1 stored before this run
    state = MatrixState(cells, stored, "cer", to_compute=10, clock=Clock())
    assert state.rows == ["a", "b"] and state.columns == ["es", "ru"]
    assert state.cell_text("a", "es") == ("0.410 2/3", "")
    assert state.cell_text("b", "ru") == ("  …   0/3", "")
    state.start(cells[2])
    assert state.cell_text("a", "es") == ("0.410 2/3 ▸", "cyan")
    state.finish(cells[2], 0.45, 20.0)
    assert state.cell_text("a", "es") == ("0.423 3/3", "bold")
    state.finish(cells[9], None, None, failed=True)  # b/ru seed 0
    assert state.cell_text("b", "ru") == ("  …   0/3 ✗1", "red")
    assert state.summary().startswith("2 of 10 cells done (1 failed); ETA ")
    lines = state.plain_lines()
    assert lines[0].split() == ["model", "es", "ru"]
    assert lines[1].split()[:3] == ["a", "0.423", "3/3"]


def test_rows_name_the_dataset_and_protocol_when_there_are_several():
    cells = [Cell("a", "synthetic", "es", 0), Cell("a", "fleurs", "es", 0), Cell("a", "synthetic", "es", 0, "superb")]
    state = MatrixState(cells, {}, "cer", 3)
    assert state.rows == ["a [synthetic]", "a [fleurs]", "a [synthetic] [superb]"]


def test_eta_from_measured_cell_times_over_the_cells_at_once():
    clock = Clock()
    cells = _cells(models=("a",), langs=("es",), seeds=range(6))
    state = MatrixState(cells, {}, "cer", to_compute=6, clock=clock)
    assert state.eta() is None and "ETA after the first cell" in state.summary()
    state.start(cells[0]), state.start(cells[1])  # two workers
    clock.now += 30
    state.finish(cells[0], 0.5, 30.0)
    state.finish(cells[1], 0.5, 30.0)
    # 4 cells left of 30 s each, two at once: 60 s
    assert state.eta() == pytest.approx(60.0)
    state.start(cells[2])
    clock.now += 10  # 10 s done of the running one
    assert state.eta() == pytest.approx((4 * 30 - 10) / 2)
    assert "ETA 55 s" in state.summary()
    assert state.running_text() == "a / synthetic:es / seed 2 (10 s)"


def test_durations_read_as_people_say_them():
    assert [duration(s) for s in (4.2, 65, 3725)] == ["4 s", "1 m 05 s", "1 h 02 m"]
    assert StageState("train", 150, 40, "loss 2.310").describe() == "train 40/150 (loss 2.310)"


def test_progress_draws_the_live_matrix_on_a_terminal():
    from harness.run.progress import Progress

    cells = _cells(models=("tiny-phone-es", "tiny-wav2vec2"), langs=("es", "it"), seeds=(0, 1))
    stream = io.StringIO()
    progress = Progress(8, enabled=True, stream=stream)
    progress.matrix(cells, {cells[0]: 0.395}, "cer", to_compute=7)
    progress.cell_started(cells[1])
    stage = progress.stage("train", 150)
    stage.advance(40)
    stage.set_postfix(loss="2.310")
    progress._live.refresh()
    drawn = stream.getvalue()
    assert "CER on test, mean so far" in drawn and "0.395 1/2 ▸" in drawn
    assert "running: tiny-phone-es / synthetic:es / seed 1" in drawn and "train 40/150 (loss 2.310)" in drawn
    progress.cell_finished(cells[1], 0.405, 20.0)
    progress.finish_cell("done  tiny-phone-es / synthetic:es / seed 1: test cer=0.405")
    progress.close()
    drawn = stream.getvalue()
    assert "done  tiny-phone-es / synthetic:es / seed 1" in drawn
    assert "0.400 2/2" in drawn and "1 of 7 cells done; ETA 2 m 00 s" in drawn


def test_without_a_terminal_nothing_is_drawn_but_the_lines():
    from harness.run.progress import Progress

    cells = _cells(models=("a",), langs=("es",), seeds=(0,))
    stream = io.StringIO()
    progress = Progress(1, enabled=False, stream=stream)
    progress.matrix(cells, {}, "cer", 1)
    progress.cell_started(cells[0])
    assert "computing a / synthetic:es / seed 0 (0 s)" in progress.heartbeat_line()
    assert "0 of 1 cells done, 1 running; ETA after the first cell" in progress.heartbeat_line()
    progress.cell_finished(cells[0], 0.5, 3.0)
    progress.finish_cell("done  a")
    progress.close()
    assert stream.getvalue() == "done  a\n"
