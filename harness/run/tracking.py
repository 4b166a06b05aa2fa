"""Experiment trackers at work: resolved and checked before any work, fed on a thread of their own.

``run.trackers`` names tracker plugins (:class:`harness.api.TrackerSpec`). The driver (``bench
run``) makes one instance of each for the run's events; wherever a cell is computed (this
process, a worker process, a Ray task, a Slurm job) one instance of each is made from the cell's
configuration for that cell's events (:mod:`harness.tracking`). A :class:`TrackerSet` hands the
events over on a daemon thread, so the loop only puts them in a queue; a tracker that raises is
skipped for the rest of its set and reported as one warning line, which the driver prints once
per tracker for the whole run (:class:`WarnOnce`): a tracker never fails a cell or loses a result.
"""

from __future__ import annotations

import queue
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api import TrackerRequest, TrackerSpec
from harness.errors import BenchError, did_you_mean
from harness.plugins import Registered, Registry, plugin_call

__all__ = ["ResolvedTracker", "TrackerSet", "WarnOnce", "new_run_id", "resolve_trackers", "tracking_directory"]

#: seconds a set waits for its trackers to take the last events when it closes
CLOSE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ResolvedTracker:
    name: str
    item: Registered[TrackerSpec]
    options: Mapping[str, Any]


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sortable, and distinct for runs started in the same second."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def tracking_directory(config: Any, name: str) -> Path:
    """A tracker's default home: ``<the store's folder>/tracking/NAME``."""
    return Path(config.store).parent / "tracking" / name


def check_tracker_options(name: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``[trackers.NAME]`` merged over the spec's defaults: unknown keys and wrongly typed values are user errors."""
    for key in options:
        if key not in defaults:
            known = ", ".join(defaults) or "(none)"
            raise BenchError(f"[trackers.{name}]: unknown option {key!r}.{did_you_mean(key, defaults)}",
                             f"options of tracker {name}: {known} (docs/tracking.md)")
    out = dict(defaults)
    for key, value in options.items():
        default = defaults[key]
        same = isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
        ok = default is None or (same and isinstance(value, bool) == isinstance(default, bool))
        if not ok:
            raise BenchError(f"[trackers.{name}] {key} must be a {type(default).__name__}, got {value!r}",
                             "fix it in bench.toml or with --set")
        out[key] = value
    return out


def resolve_trackers(config: Any, registry: Registry) -> tuple[ResolvedTracker, ...]:
    """The configured trackers, each known, available (its package installed) and with valid
    options: every problem is a user error before any work (``bench run --dry-run`` too)."""
    out: list[ResolvedTracker] = []
    for name in config.trackers:
        item = registry.tracker(name)
        spec = item.spec
        options = check_tracker_options(name, config.tracker_options.get(name, {}), spec.defaults)
        if spec.check is not None:
            plugin_call(item, "check", spec.check)
        if spec.check_options is not None:
            plugin_call(item, "option check", spec.check_options, options)
        out.append(ResolvedTracker(name, item, options))
    return tuple(out)


def _one_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


def tracker_warning(name: str, what: str, exc: BaseException) -> str:
    """The one line said about a tracker that raised: which, what it was doing, and the fix."""
    return (f"warning: tracker {name!r} failed while {what} ({_one_line(exc)}); it is skipped where it failed, "
            f"cells and results are unaffected. Fix its settings ([trackers.{name}]) or package, or leave "
            f"{name!r} out of run.trackers.")


class WarnOnce:
    """Prints each tracker's first warning of a run, and nothing more about it."""

    def __init__(self, emit: Callable[[str], None] | None = None) -> None:
        self._emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, who: str, line: str) -> None:
        with self._lock:
            if who in self._seen:
                return
            self._seen.add(who)
        self._emit(line)


_STOP = object()


class TrackerSet:
    """The tracker instances of one place (the run, or one cell), fed on a thread of their own.

    ``emit`` only puts the event in a queue; ``close`` lets the thread hand over what is left
    (up to ``CLOSE_TIMEOUT_S``), closes every instance and returns the warnings collected as
    ``(tracker, line)`` pairs. ``warn``, when given, also receives each warning as it happens."""

    def __init__(self, instances: Sequence[tuple[str, Any]], warnings: list[tuple[str, str]] | None = None,
                 warn: Callable[[str, str], None] | None = None) -> None:
        self._instances = list(instances)
        self._failed: set[str] = set()
        self.warnings: list[tuple[str, str]] = list(warnings or [])
        self._warn = warn
        for who, line in self.warnings:
            if warn is not None:
                warn(who, line)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread: threading.Thread | None = None
        if self._instances:
            self._thread = threading.Thread(target=self._work, name="bench-trackers", daemon=True)
            self._thread.start()

    @classmethod
    def empty(cls) -> TrackerSet:
        return cls(())

    @classmethod
    def open(cls, config: Any, registry: Registry, scope: str, run_id: str, cell: Any = None, key: str = "",
             warn: Callable[[str, str], None] | None = None) -> TrackerSet:
        """One instance of every configured tracker for ``scope`` (``"run"`` or ``"cell"``); a
        tracker that cannot be made (its package missing on a worker, bad settings) is left out
        with a warning."""
        if not config.trackers:
            return cls.empty()
        instances: list[tuple[str, Any]] = []
        warnings: list[tuple[str, str]] = []
        try:
            resolved = resolve_trackers(config, registry)
        except BenchError as exc:  # checked in the driver before any work: here only if a worker differs
            return cls((), [("trackers", tracker_warning(",".join(config.trackers), "starting", exc))], warn)
        for tracker in resolved:
            request = TrackerRequest(tracker.name, tracker.options, tracking_directory(config, tracker.name), run_id,
                                     scope, cell, key)
            try:
                instances.append((tracker.name, tracker.item.spec.create(request)))
            except Exception as exc:
                warnings.append((tracker.name, tracker_warning(tracker.name, f"starting for the {scope}", exc)))
        return cls(instances, warnings, warn)

    @property
    def active(self) -> bool:
        return bool(self._instances)

    def emit(self, event: Any) -> None:
        if self._thread is not None and not self._closed:
            self._queue.put(event)

    def _fail(self, name: str, what: str, exc: BaseException) -> None:
        self._failed.add(name)
        line = tracker_warning(name, what, exc)
        self.warnings.append((name, line))
        if self._warn is not None:
            try:
                self._warn(name, line)
            except Exception:  # printing a warning must not stop the others
                pass

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                break
            for name, tracker in self._instances:
                if name in self._failed:
                    continue
                try:
                    tracker.handle(event)
                except Exception as exc:  # any tracker bug: warned once, never a failed cell
                    self._fail(name, f"handling {type(event).__name__}", exc)
        for name, tracker in self._instances:
            close = getattr(tracker, "close", None)
            if close is None or name in self._failed:
                continue
            try:
                close()
            except Exception as exc:
                self._fail(name, "closing", exc)

    def close(self, timeout: float | None = None) -> list[tuple[str, str]]:
        """Hand over what is queued, close the trackers, and return the warnings ``(tracker, line)``."""
        if self._thread is not None and not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            limit = CLOSE_TIMEOUT_S if timeout is None else timeout
            self._thread.join(limit)
            if self._thread.is_alive():
                names = ", ".join(name for name, _ in self._instances)
                self.warnings.append((names, f"warning: tracker(s) {names} still busy after {limit:.0f} s at the "
                                             "end; their last events may be missing (results are unaffected)"))
                if self._warn is not None:
                    self._warn(names, self.warnings[-1][1])
        return list(self.warnings)

