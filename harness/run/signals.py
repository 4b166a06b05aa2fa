"""SIGTERM treated like Ctrl-C.

Clusters stop programs with SIGTERM (Slurm preemption and time limits, ``docker stop``,
``kill``), not with SIGINT. Inside :func:`terminate_as_interrupt` a SIGTERM raises
:class:`Terminated`, a :class:`KeyboardInterrupt`, so every ``finally`` and ``except
KeyboardInterrupt`` that tidies up after Ctrl-C (claims released, worker jobs cancelled, the
in-cell checkpoint left where the next run finds it) runs for it too. The command then exits
with 128 + the signal's number (143), as a process killed by SIGTERM would.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal other than SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: KeyboardInterrupt) -> int:
    """143 after SIGTERM, 130 after Ctrl-C."""
    return exc.exit_code if isinstance(exc, Terminated) else 128 + signal.SIGINT


def signal_name(exc: KeyboardInterrupt) -> str:
    return signal.Signals(exc.signum).name if isinstance(exc, Terminated) else "Ctrl-C"


@contextlib.contextmanager
def terminate_as_interrupt(signals: tuple[int, ...] = (signal.SIGTERM,)) -> Iterator[None]:
    """Within the block, the given signals raise :class:`Terminated` in the main thread.

    A second signal while the first is being handled is ignored (the clean-up finishes);
    outside the main thread (where Python cannot install handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}
    raised = threading.Event()

    def handler(signum, frame):
        if raised.is_set():
            return
        raised.set()
        raise Terminated(signum)

    for s in signals:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
