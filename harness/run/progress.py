"""What ``bench run`` shows while it works.

On a terminal: the model × language matrix filling in as cells finish (mean test score so
far, seeds done, failed cells marked), the cells under way with the current stage (encode,
train with its loss) and the overall ETA from measured cell times (:mod:`harness.run.live`,
drawn with rich). Before a run has a matrix (``bench pretrain``), tqdm bars.

Without a terminal (or ``--no-progress``): one line per finished cell, and a heartbeat line
when ``run.heartbeat_seconds`` pass without output — during pre-training, feature caching or a
long cell — saying what is under way, how far its stage is and how much of the matrix is done,
so logs on a cluster show progress.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tqdm.auto import tqdm

from harness.run.live import MatrixState, StageState, duration, matrix_table


class _Stage:
    """One stage's bar (tqdm, possibly disabled) and its state for the live view and heartbeats."""

    def __init__(self, bar: tqdm | None, state: StageState, owner: Progress) -> None:
        self._bar, self.state, self._owner = bar, state, owner

    def advance(self, n: int = 1) -> None:
        self.state.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        self.state.postfix = ", ".join(f"{k} {v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._owner.stage_state is self.state:
            self._owner.stage_state = None


class Progress:
    """The run's display: a matrix bar or live matrix, a per-cell stage, log lines and heartbeats.

    ``enabled=None`` draws only on a terminal; finished cells are always reported as one log
    line each, so logs of batch jobs stay readable. ``heartbeat_seconds`` > 0 (without drawing)
    prints what is under way after that many seconds without a line."""

    def __init__(self, total_cells: int, enabled: bool | None = None, stream=None, desc: str = "matrix",
                 unit: str = "cell", heartbeat_seconds: float = 0.0) -> None:
        self.stream = stream or sys.stderr
        disable = (not self.stream.isatty()) if enabled is None else not enabled
        self._disable = disable
        self._forced = enabled is True
        self._desc = desc
        self._matrix = tqdm(total=total_cells, desc=desc, unit=unit, position=0,
                            disable=disable, file=self.stream, dynamic_ncols=True)
        self._stage: _Stage | None = None
        self.stage_state: StageState | None = None
        self.cell_label = ""
        self.state: MatrixState | None = None
        self._live = None
        self._activity: list[tuple[str, float]] = []
        self._lock = threading.RLock()
        self._last_line = time.monotonic()
        self._stopped = threading.Event()
        self.heartbeat_seconds = heartbeat_seconds
        self._beat: threading.Thread | None = None
        if disable and heartbeat_seconds > 0:
            self._beat = threading.Thread(target=self._heartbeats, name="bench-heartbeat-lines", daemon=True)
            self._beat.start()

    # ------------------------------------------------------------------ the matrix
    def matrix(self, cells: Iterable[Any], stored: Mapping[Any, float | None], metric: str, to_compute: int) -> None:
        """The run's matrix (every planned cell, the test ``metric`` of those stored already):
        on a terminal it is drawn live from here on, replacing the bars."""
        self.state = MatrixState(cells, stored, metric, to_compute)
        if self._disable:
            return
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:  # pragma: no cover - rich comes with bench; the bars stay
            return
        self._matrix.close()
        console = Console(file=self.stream, force_terminal=True if self._forced else None)
        self._live = Live(console=console, refresh_per_second=4, transient=False, redirect_stdout=False,
                          redirect_stderr=False, get_renderable=lambda: matrix_table(self.state, self.stage_state))
        self._live.start()

    def cell_started(self, cell: Any) -> None:
        if self.state is not None:
            self.state.start(cell)

    def cell_finished(self, cell: Any, score: float | None, seconds: float | None, failed: bool = False) -> None:
        if self.state is not None:
            self.state.finish(cell, score, seconds, failed)

    @contextlib.contextmanager
    def activity(self, label: str) -> Iterator[None]:
        """Name what this process is doing (``preparing model tiny-phone-es``) for heartbeat lines."""
        with self._lock:
            self._activity.append((label, time.monotonic()))
        try:
            yield
        finally:
            with self._lock:
                self._activity = [a for a in self._activity if a[0] != label]

    # ------------------------------------------------------------------ cells and stages
    def start_cell(self, label: str) -> None:
        self.cell_label = label
        if self._live is None:
            self._matrix.set_description_str(f"{self._desc} [{label}]", refresh=True)

    def stage(self, name: str, total: int) -> _Stage:
        if self._stage is not None:
            self._stage.close()
        bar = None
        if self._live is None:
            bar = tqdm(total=total, desc=f"  {name}", position=1, leave=False,
                       disable=self._disable, file=self.stream, dynamic_ncols=True)
        self.stage_state = StageState(name, total)
        self._stage = _Stage(bar, self.stage_state, self)
        return self._stage

    def finish_cell(self, line: str) -> None:
        if self._stage is not None:
            self._stage.close()
            self._stage = None
        if self._live is None:
            self._matrix.update(1)
        self.log(line)

    def log(self, line: str) -> None:
        with self._lock:
            self._last_line = time.monotonic()
            if self._live is not None:
                self._live.console.print(line, markup=False, highlight=False, soft_wrap=True)
            elif self._disable:
                print(line, file=self.stream, flush=True)
            else:
                self._matrix.write(line, file=self.stream)

    def close(self) -> None:
        self._stopped.set()
        if self._stage is not None:
            self._stage.close()
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._matrix.close()

    # ------------------------------------------------------------------ heartbeats
    def heartbeat_line(self) -> str:
        """What is under way, in one line: the activity or the cells running, this process's
        stage, and the matrix's progress with its ETA."""
        now = time.monotonic()
        parts: list[str] = []
        with self._lock:
            activity = list(self._activity)
        if activity:
            label, since = activity[-1]
            parts.append(f"{label} for {duration(now - since)}")
        elif self.state is not None and self.state.running:
            parts.append("computing " + self.state.running_text())
        elif self.cell_label:
            parts.append(f"computing {self.cell_label}")
        stage = self.stage_state
        if stage is not None:
            parts.append(stage.describe())
        if self.state is not None:
            parts.append(self.state.summary())
        return f"heartbeat {time.strftime('%H:%M:%S')}: " + ("; ".join(parts) or "working")

    def _heartbeats(self) -> None:
        tick = min(max(self.heartbeat_seconds / 4, 0.05), 1.0)
        while not self._stopped.wait(tick):
            with self._lock:
                due = time.monotonic() - self._last_line >= self.heartbeat_seconds
            if due:
                try:
                    self.log(self.heartbeat_line())
                except Exception:  # a closed stream: nothing more to say
                    return
