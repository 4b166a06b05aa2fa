"""``bench compare``: a results file against a stored baseline, for CI.

Both sides are JSON files written by ``bench report --json FILE`` (or the ``matrix.json`` of
any report). Entries are compared per (model, dataset, language, split, metric) on the mean
over seeds, and per model's summaries across languages (the macro-average and the mean of the
worst languages, keyed as the languages ``(macro-average)`` and ``(worst-k mean)``). For a lower-is-better metric a regression is ``current - baseline`` above the
tolerance ``max(absolute, relative * baseline)``; an improvement is the mirror image.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BenchError

#: default tolerances per metric: (absolute, relative)
DEFAULT_TOLERANCE = (0.01, 0.0)

Key = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Delta:
    key: Key
    baseline: float
    current: float
    tolerance: float
    status: str  # "regression", "improvement", "same"

    @property
    def change(self) -> float:
        return self.current - self.baseline


@dataclass(frozen=True)
class Comparison:
    deltas: list[Delta]
    missing: list[Key]  # in the baseline, not in the current results
    extra: list[Key]  # in the current results, not in the baseline

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.status == "regression"]

    @property
    def improvements(self) -> list[Delta]:
        return [d for d in self.deltas if d.status == "improvement"]

    def failed(self, allow_missing: bool = False) -> bool:
        return bool(self.regressions) or (bool(self.missing) and not allow_missing)


def _model_label(row: Mapping) -> str:
    """The model, with its protocol when it is not the default one (summaries written before
    protocols existed have none: they were fine-tuned)."""
    protocol = row.get("protocol") or "finetune"
    return row["model"] if protocol == "finetune" else f"{row['model']} [{protocol}]"


def results_from_summary(rows: list[Mapping]) -> dict[Key, float]:
    """Summary rows (as in a report's JSON or :func:`harness.report.tables.summary_frame`) -> mean per key."""
    return {(_model_label(r), r["dataset"], r["language"], r["split"], r["metric"]): float(r["mean"]) for r in rows}


def load_results(path: str | Path) -> dict[Key, float]:
    from harness.report.summaries import compare_entries

    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        # the summaries across languages (macro-average, worst-k mean) are compared like languages
        return results_from_summary(payload["summary"]) | compare_entries(payload.get("across_languages") or [])
    except FileNotFoundError:
        raise BenchError(f"results file {str(path)!r} does not exist",
                         "write one with `bench report --json FILE`") from None
    except IsADirectoryError:
        raise BenchError(f"results file {str(path)!r} is a directory",
                         f"pass the JSON file itself, e.g. {path / 'matrix.json'} (written by `bench report`)") from None
    except OSError as exc:
        raise BenchError(f"results file {str(path)!r} cannot be read: {exc.strerror or exc}",
                         "pass a readable file written by `bench report --json FILE`") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BenchError(f"{path} is not a bench results file ({type(exc).__name__}: {' '.join(str(exc).split())})",
                         "compare files written by `bench report --json FILE`") from None


def parse_tolerances(items: list[str]) -> dict[str, float]:
    """``["cer=0.02", "wer=0.05"]`` -> {"cer": 0.02, "wer": 0.05}."""
    out = {}
    for item in items:
        metric, sep, value = item.partition("=")
        try:
            number = float(value) if sep else -1.0
        except ValueError:
            number = -1.0
        if number < 0 or not metric.strip():
            raise BenchError(f"tolerance {item!r} is not of the form METRIC=NUMBER (>= 0)", "e.g. --abs cer=0.02")
        out[metric.strip()] = number
    return out


def compare(
    baseline: Mapping[Key, float],
    current: Mapping[Key, float],
    absolute: Mapping[str, float] | None = None,
    relative: Mapping[str, float] | None = None,
    higher_is_better: frozenset[str] = frozenset(),
) -> Comparison:
    absolute, relative = absolute or {}, relative or {}
    deltas = []
    for key in sorted(baseline.keys() & current.keys()):
        metric = key[4]
        base, now = baseline[key], current[key]
        tolerance = max(absolute.get(metric, DEFAULT_TOLERANCE[0]), relative.get(metric, DEFAULT_TOLERANCE[1]) * abs(base))
        worse = (base - now) if metric in higher_is_better else (now - base)
        status = "regression" if worse > tolerance + 1e-12 else ("improvement" if -worse > tolerance + 1e-12 else "same")
        deltas.append(Delta(key, base, now, tolerance, status))
    return Comparison(deltas, sorted(baseline.keys() - current.keys()), sorted(current.keys() - baseline.keys()))
