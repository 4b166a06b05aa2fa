"""``bench list``: What is installed: models (and groups), datasets, metrics, executors, protocols, decoders,
trackers, languages."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from harness.plugins import process_registry


def add_parser(sub) -> None:
    lst = sub.add_parser("list", help="list models, datasets (with languages) and metrics, and their origin")
    lst.add_argument("--models", action="store_true")
    lst.add_argument("--datasets", action="store_true")
    lst.add_argument("--metrics", action="store_true")
    lst.add_argument("--executors", action="store_true")
    lst.add_argument("--protocols", action="store_true", help="evaluation protocols and their options")
    lst.add_argument("--decoders", action="store_true", help="decoders of the stored outputs and their options")
    lst.add_argument("--trackers", action="store_true", help="experiment trackers (run.trackers), their options and extras")
    lst.add_argument("--languages", action="store_true",
                     help="the study's languages: family, script, case, spaces, and which datasets have them")
    lst.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = process_registry()
    show_all = not (args.models or args.datasets or args.metrics or args.languages or args.executors
                    or args.protocols or args.decoders or args.trackers)
    if show_all or args.models:
        rows = [[name, reg.spec.description, _meta(reg.spec.metadata), str(reg.origin)]
                for name, reg in sorted(registry.models.items())]
        rows += [[f"{prefix}:…", reg.spec.description, "", str(reg.origin)]
                 for prefix, reg in sorted(registry.schemes.items())]
        print(tabulate(rows, headers=["model", "description", "details", "from"]), end="\n\n")
        from harness.plan.planner import ALL, ALL_MODELS

        rows = [[name, reg.spec.description, " ".join(reg.spec.members), str(reg.origin)]
                for name, reg in sorted(registry.groups.items())]
        rows.append([ALL, ALL_MODELS, f"({len(registry.models)} models)", "bench"])
        print(tabulate(rows, headers=["group", "description", "models", "from"], maxcolwidths=[None, 60, 60, None]),
              end="\n\n")
    if show_all or args.datasets:
        rows = [[name, reg.spec.description, _dataset_languages(reg.spec), str(reg.origin)]
                for name, reg in sorted(registry.datasets.items())]
        print(tabulate(rows, headers=["dataset", "description", "languages", "from"], maxcolwidths=[None, 60, 60, None]),
              end="\n\n")
    if show_all or args.protocols:
        rows = [[name, reg.spec.description, " ".join(f"{k}={v}" for k, v in reg.spec.defaults.items()) or "-",
                 str(reg.origin)] for name, reg in sorted(registry.protocols.items())]
        print(tabulate(rows, headers=["protocol", "description", "options (defaults)", "from"], maxcolwidths=[None, 60, 40, None]),
              end="\n\n")
    if show_all or args.decoders:
        rows = [[name, reg.spec.description,
                 " ".join(f"{k}={v}" for k, v in reg.spec.defaults.items()) or "-",
                 " ".join(reg.spec.tuned) + (f" (on dev, by {reg.spec.tune_metric})" if reg.spec.tuned else "") or "-",
                 str(reg.origin)] for name, reg in sorted(registry.decoders.items())]
        print(tabulate(rows, headers=["decoder", "description", "options (defaults)", "tuned", "from"],
                       maxcolwidths=[None, 50, 40, 20, None]), end="\n\n")
    if show_all or args.trackers:
        rows = [[name, reg.spec.description,
                 " ".join(f"{k}={v!r}" for k, v in reg.spec.defaults.items()) or "-",
                 _availability(reg.spec), str(reg.origin)] for name, reg in sorted(registry.trackers.items())]
        print(tabulate(rows, headers=["tracker", "description", "options (defaults)", "installed", "from"],
                       maxcolwidths=[None, 50, 40, 30, None]), end="\n\n")
    if show_all or args.metrics:
        rows = [[name, reg.spec.description, "lower" if reg.spec.lower_is_better else "higher", str(reg.origin)]
                for name, reg in sorted(registry.metrics.items())]
        print(tabulate(rows, headers=["metric", "description", "better", "from"]), end="\n\n")
    if show_all or args.executors:
        rows = [[name, reg.spec.description, " ".join(reg.spec.options), str(reg.origin)]
                for name, reg in sorted(registry.executors.items())]
        print(tabulate(rows, headers=["executor", "description", "options", "from"]),
              end="\n\n" if args.languages else "\n")
    if args.languages:
        from harness.languages import STUDY_LANGUAGES

        rows = [[lang.code, lang.name, f"{lang.family} / {lang.subgroup}", lang.script,
                 "yes" if lang.cased else "no", "yes" if lang.spaced else "no",
                 " ".join(n for n, reg in sorted(registry.datasets.items()) if lang.code in reg.spec.languages)]
                for lang in STUDY_LANGUAGES.values()]
        print(tabulate(rows, headers=["code", "language", "family / subgroup", "script", "case", "spaces",
                                      "datasets"]))
        from harness.plan.planner import LANGUAGE_GROUPS

        print("\n--langs groups: " + "; ".join(f"{name}: {what}" for name, what in LANGUAGE_GROUPS.items()))
    return 0


def _availability(spec) -> str:
    """``yes``, or the extra that installs what a tracker needs."""
    from harness.errors import BenchError

    try:
        if spec.check is not None:
            spec.check()
    except BenchError:
        return f"no: pip install 'bench[{spec.extra}]'" if spec.extra else "no"
    except Exception:
        return "no"
    return "yes"


def _dataset_languages(spec) -> str:
    """The languages column of ``bench list --datasets``: the codes, or what decides them."""
    if not spec.languages:
        return "from its options (see its docs)"
    shown = " ".join(spec.languages)
    if spec.list_languages is not None:
        shown += " (those present in the configured data)"
    return shown

def _meta(metadata) -> str:
    parts = [f"{k}={metadata[k]}" for k in ("architecture", "hub_id", "parameters") if metadata.get(k)]
    if "pretraining_hours" in metadata:
        hours = metadata["pretraining_hours"]
        parts.append(f"pre-training={hours / 1000:g}k h" if hours >= 1000 else f"pre-training={hours:g} h")
    langs = metadata.get("pretraining_languages")
    count = metadata.get("pretraining_language_count")
    if langs and len(langs) <= 5:
        parts.append("languages=" + " ".join(langs))
    elif count:
        parts.append(f"languages={count}")
    if metadata.get("domain") and metadata["domain"] != "none":
        parts.append(f"domain={metadata['domain']}")
    return ", ".join(parts)
