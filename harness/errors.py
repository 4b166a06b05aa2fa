"""User-facing errors: one message naming the problem, one naming the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The CLI prints ``message`` and ``hint`` without a traceback and exits with status 2.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self):  # picklable whole (message and hint), e.g. from a worker process
        return (_rebuild, (type(self), self.__dict__))

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


def _rebuild(cls, state):
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A "did you mean" suffix ("" when nothing is close)."""
    choices = list(choices)
    lowered = name.lower()
    # codes with a region ("zh" for "zh-CN", "sv" for "sv-SE") and case slips count as close
    close = [c for c in choices if c.lower() == lowered or c.lower().split("-")[0] == lowered]
    close += [c for c in difflib.get_close_matches(name, choices, n=3, cutoff=0.6) if c not in close]
    close = close[:3]
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def unknown(kind: str, name: str, choices: Iterable[str], hint: str | None = None) -> BenchError:
    """The standard error for an unknown model, dataset, language, metric or setting."""
    choices = sorted(choices)
    listing = ", ".join(choices) if choices else "(none registered)"
    return BenchError(
        f"unknown {kind} {name!r}.{did_you_mean(name, choices)} Known {kind}s: {listing}.",
        hint,
    )


class MissingInput(BenchError):
    """A check's finding that something a run reads (a checkpoint, a dataset's files) is not on this
    machine. Problems of the same ``cause`` and ``hint`` are reported together: the cause once, the
    affected names listed, one fix (``bench run --models all`` on a machine without checkpoints
    gives one block, not one error per model)."""

    def __init__(self, name: str, cause: str, hint: str | None = None, message: str | None = None) -> None:
        # ``message``: the full sentence when this problem is reported alone (default "NAME: CAUSE")
        super().__init__(message or f"{name}: {cause}", hint)
        self.name = name
        self.cause = cause
