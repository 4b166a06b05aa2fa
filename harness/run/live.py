"""The matrix as it fills in: what ``bench run`` shows live on a terminal and says in heartbeat lines.

:class:`MatrixState` keeps, per model × language, the test scores of the cells done so far
(stored before this run or computed in it), the seeds done of how many, the failed cells, the
cells under way and how long finished cells took, from which it estimates the time left. It
knows nothing of terminals: :func:`matrix_table` draws it with rich, :meth:`MatrixState.summary`
says it in one line.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MatrixState", "StageState", "duration", "matrix_table"]


def duration(seconds: float) -> str:
    """``42 s``, ``3 m 05 s``, ``2 h 07 m``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


@dataclass
class StageState:
    """The stage under way in this process (encode, train, ...): how far, and its last postfix (the loss)."""

    name: str
    total: int
    n: int = 0
    postfix: str = ""

    def describe(self) -> str:
        shown = f"{self.name.strip()} {self.n}/{self.total}" if self.total else self.name.strip()
        return shown + (f" ({self.postfix})" if self.postfix else "")


@dataclass
class _Slot:
    scores: list[float] = field(default_factory=list)
    failed: int = 0
    total: int = 0
    running: int = 0


def _row(cell: Any, several_datasets: bool) -> str:
    row = cell.model
    if several_datasets:
        row += f" [{cell.dataset}]"
    if cell.protocol != "finetune":
        row += f" [{cell.protocol}]"
    return row


class MatrixState:
    """The matrix of one run: rows are models (with the dataset or protocol when there are several), columns languages."""

    def __init__(self, cells: Iterable[Any], stored: Mapping[Any, float | None], metric: str,
                 to_compute: int, clock=time.monotonic) -> None:
        cells = list(cells)
        self.metric = metric
        self._clock = clock
        self._several = len({c.dataset for c in cells}) > 1
        self.rows: list[str] = list(dict.fromkeys(_row(c, self._several) for c in cells))
        self.columns: list[str] = list(dict.fromkeys(c.language for c in cells))
        self.slots: dict[tuple[str, str], _Slot] = {}
        for cell in cells:
            self._slot(cell).total += 1
        for cell, score in stored.items():
            if score is not None and not math.isnan(score):
                self._slot(cell).scores.append(score)
        self.to_compute = to_compute
        self.finished = 0
        self.failed = 0
        self.durations: list[float] = []
        self.running: dict[str, tuple[Any, float]] = {}
        self.most_in_flight = 1
        self.started = clock()
        self.lock = threading.Lock()

    def _slot(self, cell: Any) -> _Slot:
        return self.slots.setdefault((_row(cell, self._several), cell.language), _Slot())

    # ------------------------------------------------------------------ changes
    def start(self, cell: Any) -> None:
        with self.lock:
            self.running[cell.label()] = (cell, self._clock())
            self._slot(cell).running += 1
            self.most_in_flight = max(self.most_in_flight, len(self.running))

    def finish(self, cell: Any, score: float | None, seconds: float | None, failed: bool = False) -> None:
        with self.lock:
            started = self.running.pop(cell.label(), None)
            slot = self._slot(cell)
            if started is not None:
                slot.running -= 1
            self.finished += 1
            if failed:
                slot.failed += 1
                self.failed += 1
            elif score is not None and not math.isnan(score):
                slot.scores.append(score)
            if seconds is None and started is not None:
                seconds = self._clock() - started[1]
            if seconds is not None and not failed:
                self.durations.append(seconds)

    # ------------------------------------------------------------------ reading
    def eta(self) -> float | None:
        """Seconds left: cells to go × the median time of the cells finished in this run, spread
        over as many at once as ran at once, less what the running ones have done. None before
        the first cell finishes."""
        with self.lock:
            if not self.durations:
                return None
            typical = statistics.median(self.durations)
            left = max(self.to_compute - self.finished, 0)
            now = self._clock()
            under_way = sum(min(now - start, typical) for _, start in self.running.values())
            return max(left * typical - under_way, 0.0) / max(self.most_in_flight, 1)

    def cell_text(self, row: str, column: str) -> tuple[str, str]:
        """What one matrix entry shows, and its style: ``0.395 3/3``, ``… 1/3``, ``0.412 2/3 ✗1``."""
        slot = self.slots.get((row, column))
        if slot is None or slot.total == 0:
            return "", ""
        done = len(slot.scores)
        mean = f"{statistics.fmean(slot.scores):.3f}" if slot.scores else "  …  "
        text = f"{mean} {done}/{slot.total}"
        style = "bold" if done == slot.total else ""
        if slot.running:
            text += " ▸"
            style = "cyan"
        if slot.failed:
            text += f" ✗{slot.failed}"
            style = "red"
        return text, style

    def summary(self) -> str:
        """``4 of 27 cells done (1 failed), 2 running; ETA 3 m 05 s``."""
        eta = self.eta()
        with self.lock:
            parts = f"{self.finished} of {self.to_compute} cells done"
            if self.failed:
                parts += f" ({self.failed} failed)"
            if self.running:
                parts += f", {len(self.running)} running"
        if self.finished < self.to_compute:
            parts += f"; ETA {duration(eta)}" if eta is not None else "; ETA after the first cell"
        return parts

    def running_text(self) -> str:
        """The cells under way and for how long."""
        with self.lock:
            now = self._clock()
            return ", ".join(f"{cell.label()} ({duration(now - start)})" for cell, start in self.running.values())

    def plain_lines(self) -> list[str]:
        """The matrix as text lines (what the live view shows, without colours)."""
        width = max([len(r) for r in self.rows] + [5])
        cells = {(r, c): self.cell_text(r, c)[0] for r in self.rows for c in self.columns}
        widths = {c: max([len(c)] + [len(cells[(r, c)]) for r in self.rows]) for c in self.columns}
        lines = [" ".join([f"{'model':<{width}}"] + [f"{c:<{widths[c]}}" for c in self.columns])]
        lines += [" ".join([f"{r:<{width}}"] + [f"{cells[(r, c)]:<{widths[c]}}" for c in self.columns])
                  for r in self.rows]
        return lines


def matrix_table(state: MatrixState, stage: StageState | None = None):
    """The live view: the matrix as a rich table, the cells under way (with this process's stage) and the ETA."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{state.metric.upper()} on test, mean so far (seeds done/planned; ▸ running, ✗ failed)",
                  title_justify="left", box=None, padding=(0, 2, 0, 0), header_style="bold")
    table.add_column("model")
    for column in state.columns:
        table.add_column(column)
    for row in state.rows:
        table.add_row(row, *(Text(*state.cell_text(row, column)) for column in state.columns))
    lines = [table]
    running = state.running_text()
    if running:
        lines.append(Text("running: " + running + (f" — {stage.describe()}" if stage is not None else ""),
                          overflow="ellipsis", no_wrap=True))
    elif stage is not None:
        lines.append(Text(stage.describe()))
    lines.append(Text(state.summary(), style="bold"))
    return Group(*lines)
