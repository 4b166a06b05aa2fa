"""Progress bars: one for the matrix, one for the stage of the current cell (tqdm)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


class _Stage:
    def __init__(self, bar: tqdm) -> None:
        self._bar = bar

    def advance(self, n: int = 1) -> None:
        self._bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        self._bar.close()


class Progress:
    """Matrix-level bar plus a per-cell stage bar (encode, train, ...).

    ``enabled=None`` shows bars only on a terminal; finished cells are always reported as
    one log line each, so logs of batch jobs stay readable.
    """

    def __init__(self, total_cells: int, enabled: bool | None = None, stream=None, desc: str = "matrix",
                 unit: str = "cell") -> None:
        self.stream = stream or sys.stderr
        disable = (not self.stream.isatty()) if enabled is None else not enabled
        self._disable = disable
        self._desc = desc
        self._matrix = tqdm(total=total_cells, desc=desc, unit=unit, position=0,
                            disable=disable, file=self.stream, dynamic_ncols=True)
        self._stage: _Stage | None = None
        self.cell_label = ""

    def start_cell(self, label: str) -> None:
        self.cell_label = label
        self._matrix.set_description_str(f"{self._desc} [{label}]", refresh=True)

    def stage(self, name: str, total: int) -> _Stage:
        if self._stage is not None:
            self._stage.close()
        bar = tqdm(total=total, desc=f"  {name}", position=1, leave=False,
                   disable=self._disable, file=self.stream, dynamic_ncols=True)
        self._stage = _Stage(bar)
        return self._stage

    def finish_cell(self, line: str) -> None:
        if self._stage is not None:
            self._stage.close()
            self._stage = None
        self._matrix.update(1)
        self.log(line)

    def log(self, line: str) -> None:
        if self._disable:
            print(line, file=self.stream, flush=True)
        else:
            self._matrix.write(line, file=self.stream)

    def close(self) -> None:
        if self._stage is not None:
            self._stage.close()
        self._matrix.close()
