"""The ``bench`` command line: run, list, download, pretrain, failures, report, compare."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from harness import __version__
from harness.plan.config import RunConfig, load_config, parse_set, runtime_fingerprint
from harness.errors import BenchError
from harness.plugins import process_registry


def _selection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="bench.toml to read (default: ./bench.toml or $BENCH_CONFIG)")
    parser.add_argument("--preset", help="named preset from bench.toml (default: run.preset of the file, else tiny-study)")
    parser.add_argument("--models", help="comma-separated model names or groups (study, tiny, english, ...: "
                        "bench list --models), or 'all' (every registered model)")
    parser.add_argument("--datasets", help="comma-separated dataset names, or 'all'")
    parser.add_argument("--langs", help="comma-separated language codes, 'study' (the study's 18) or 'all' "
                        "(every language the dataset offers)")
    parser.add_argument("--seeds", help="number of seeds (0..N-1)")
    parser.add_argument("--protocols", help="comma-separated evaluation protocols (finetune, superb, ...), or 'all'")
    parser.add_argument("--metrics", help="comma-separated metric names (run.metrics), e.g. cer,wer")
    parser.add_argument("--store", help="results store (SQLite file)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any bench.toml setting, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                        help="make a setting a dimension of the matrix, e.g. --sweep train.lr=1e-4,3e-4 (repeatable; "
                        "adds to run.sweep); reports keep the value best on dev")


def _config(args: argparse.Namespace) -> RunConfig:
    overrides = parse_set(args.assignments)
    run = overrides.setdefault("run", {})
    for flag in ("models", "datasets", "langs", "seeds", "metrics", "protocols", "store", "executor"):
        value = getattr(args, flag, None)
        if value is not None:
            run[flag] = value
    sweeps = getattr(args, "sweeps", None)
    if sweeps:
        from harness.plan.sweep import parse_sweep_flags

        run["sweep"] = {**(run.get("sweep") or {}), **parse_sweep_flags(sweeps)}
    return load_config(args.config, args.preset, overrides)


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.run.progress import Progress
    from harness.run.runner import execute, plan_run
    from harness.run.signals import exit_code, signal_name, terminate_as_interrupt
    from harness.store.results import ResultStore

    config = _config(args)
    registry = process_registry()
    plan = plan_run(config, registry)
    if args.dry_run:  # creates nothing: no store, no cache
        done: set[str] = set()
        failed: set[str] = set()
        if config.store.exists():
            with ResultStore(config.store, readonly=True) as store:
                done = store.done_keys(c.key for c in plan.cells)
                runtime = runtime_fingerprint(config)  # failures under another runtime are computed again
                failed = {f.key for f in store.failures(c.key for c in plan.cells) if f.runtime in ("", runtime)}
        from harness.plan.sweep import config_at, format_value

        axes = [axis.key for axis in plan.sweep]
        rows = [[c.cell.model, c.cell.dataset, c.cell.language, c.cell.seed, c.cell.protocol,
                 *(format_value(v) for _, v in c.point),
                 "stored" if c.key in done else ("failed" if c.key in failed else "to compute"), c.key]
                for c in plan.cells]
        print(tabulate(rows, headers=["model", "dataset", "language", "seed", "protocol", *axes, "state", "key"],
                       disable_numparse=True))
        print(f"\n{len(plan.cells)} cells, {len(done)} stored, {len(plan.cells) - len(done)} to compute "
              f"(preset {config.preset}, {config.train.steps} updates each; store {config.store})")
        if plan.sweep:
            npoints = len({c.point for c in plan.cells})
            print("swept: " + "; ".join(f"{a.key} over {a.grid()} ({len(a.values)} values)" for a in plan.sweep)
                  + f": {npoints} point(s), each a full matrix; reports keep the value best on dev "
                  + ("(data amounts are kept apart as regimes)" if any(a.is_data_amount for a in plan.sweep) else ""))
        from harness.plan.cost import plan_cost

        by_recipe: dict[tuple, list] = {}  # a swept recipe (steps, batch) costs per its own values
        for c in plan.cells:
            if c.key not in done:
                train = config_at(config, c.point).train if c.point else config.train
                by_recipe.setdefault((train.steps, train.batch_seconds * train.grad_accum), []).append(c)
        for (steps, update_seconds), pending in by_recipe.items():
            estimate = plan_cost(pending, steps, update_seconds, config.cache_dir)
            if estimate.cells:
                if len(by_recipe) > 1:
                    print(f"\n{len(pending)} cell(s) of {steps} updates, {update_seconds:g} s per update:")
                print("\n" + "\n".join(estimate.lines(steps, update_seconds)))
        from harness.run.runner import check_inputs, inputs_error

        problems = check_inputs([c for c in plan.cells if c.key not in done], config)  # as a run checks them
        if problems:
            missing = inputs_error(problems)
            print(f"\nwarning: a run would stop before any cell: {missing.message}\n  hint: {missing.hint}",
                  file=sys.stderr)
        return 0
    from harness.engine.device import check_runtime

    check_runtime(config, registry)  # before the store is made (execute checks again, pre-training included)
    with ResultStore(config.store) as store:
        done = store.done_keys(c.key for c in plan.cells)
        progress = Progress(len(plan.cells) - len(done), enabled=None if not args.no_progress else False)
        try:
            with terminate_as_interrupt():  # SIGTERM (Slurm preemption, docker stop, kill) like Ctrl-C
                summary = execute(plan, config, store, progress, registry, retry_failed=args.retry_failed,
                                  keep_going=args.keep_going)
        except KeyboardInterrupt as exc:
            progress.close()
            stored = len(store.done_keys(c.key for c in plan.cells))
            checkpoints = config.cache_dir / "checkpoints"
            print(f"\ninterrupted ({signal_name(exc)}): {stored - len(done)} cell(s) finished in this run; "
                  f"{stored} of the {len(plan.cells)} planned cells are stored in {config.store}. A cell under way "
                  f"keeps its in-cell checkpoint in {checkpoints}, from which the next run resumes it. "
                  "Run the same command again to continue.", file=sys.stderr)
            return exit_code(exc)
        except BenchError:
            progress.close()
            finished = len(store.done_keys(c.key for c in plan.cells)) - len(done)
            if finished:
                print(f"the {finished} cell(s) finished before this error are stored; fix it and run again "
                      "to continue.", file=sys.stderr)
            raise
        progress.close()
        print(f"{summary.computed} cells computed, {summary.already_done} already stored "
              f"({summary.seconds:.1f} s). Results: {config.store}")
        if summary.left_to_others:
            print(f"{summary.left_to_others} cells were being computed by another run on this store; "
                  "run again after it finishes to see them here.")
        scored = _scored(config, store, [c.key for c in plan.cells])
        if plan.sweep:  # the matrix of the values chosen on dev (bench report shows the choices)
            scored = _chosen_cells(config, scored, {"sweep": plan.sweep,
                                                    "points": {c.key: c.point for c in plan.cells}})
            print("\nswept " + ", ".join(a.describe() for a in plan.sweep) + ": the matrix below is at the values "
                  "chosen on dev; `bench report` (with the same --sweep) states each choice")
        _print_matrix(config, scored)
        done = store.done_keys(c.key for c in plan.cells)
        failed = store.failures(c.key for c in plan.cells if c.key not in done)
        if failed:
            print(f"\n{len(failed)} cell(s) failed (recorded in the store; every other cell went on):",
                  file=sys.stderr)
            for f in failed:
                print(f"  {f.model} {f.dataset}:{f.language} seed {f.seed} [{f.kind}, attempt {f.attempts}]: "
                      f"{f.message}" + (f"\n    hint: {f.detail}" if f.kind == "user" and f.detail else ""),
                      file=sys.stderr)
            print("fix the cause and run `bench run --retry-failed` to compute them again "
                  "(`bench failures` shows the tracebacks).", file=sys.stderr)
            return 3
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from harness.run.prepare_models import prepare_context
    from harness.run.progress import Progress
    from harness.run.runner import resolve_models

    config = _config(args)
    registry = process_registry()
    specs = [(reg.spec, options) for reg, options in resolve_models(config, registry).values()
             if reg.spec.prepare is not None]
    if not specs:
        made_here = sorted(name for name, reg in registry.models.items() if reg.spec.prepare is not None)
        print(f"none of the selected models ({', '.join(config.models)}) is made here; models pre-trained here: "
              f"{', '.join(made_here) or 'none'} (and phone:LANG+LANG..., ssl:LANG+LANG...)")
        return 0
    from harness.engine.device import check_runtime

    check_runtime(config, registry, here=True)  # the device and precision it would pre-train with
    progress = Progress(len(specs), enabled=None if not args.no_progress else False, desc="pretrain", unit="model")
    context = prepare_context(config, registry, progress, force=args.force)
    rows = []
    try:
        for spec, options in specs:
            progress.start_cell(spec.name)
            facts = spec.prepare(dataclasses.replace(context, options=dict(options)))
            recipe = facts.get("recipe", {})
            rows.append([spec.name, facts.get("kind", ""), "+".join(recipe.get("languages", [])), recipe.get("steps"),
                         facts.get("summary", ""),
                         f"{facts.get('seconds', 0):.0f} s" + ("" if facts.get("prepared_now") else " (cached)"),
                         facts.get("path")])
            progress.finish_cell(f"ready {spec.name}: {facts.get('path')}")
    except KeyboardInterrupt:
        progress.close()
        print("\ninterrupted: models finished before are in the cache, nothing half-written is left; run the "
              "same command again to continue.", file=sys.stderr)
        return 130
    finally:
        progress.close()
    print(tabulate(rows, headers=["model", "kind", "languages", "updates", "result", "took", "checkpoint"]))
    return 0


def _cmd_failures(args: argparse.Namespace) -> int:
    config = _config(args)
    keys = None
    if not args.all:  # only the failures of the configured matrix's cells
        from harness.run.runner import plan_run

        keys = [c.key for c in plan_run(config, process_registry()).cells]
    with _existing_store(config) as store:
        failed = store.failures(keys)
        others = 0 if keys is None else len(store.failures()) - len(failed)
    if not failed:
        print(f"no failed cells {'in' if keys is None else 'of the configured selection in'} {config.store}"
              + (f" ({others} other failure(s) outside it: `bench failures --all` shows them)" if others else ""))
        return 0
    for f in failed:
        print(f"== {f.model} {f.dataset}:{f.language} seed {f.seed} [{f.kind}, attempt {f.attempts}, key {f.key}]")
        print(f.message)
        if f.detail:
            print(f.detail.rstrip())
        print()
    if others:
        print(f"({others} other failure(s) outside the configured selection: `bench failures --all` shows them)")
    return 0


def _directions(registry) -> dict[str, bool]:
    return {name: reg.spec.lower_is_better for name, reg in registry.metrics.items()}


def _scored(config: RunConfig, store, keys: Sequence[str]):
    """The stored cells of ``keys`` with every configured metric scored: a metric added after the
    cells ran (or whose version changed) is computed from their stored hypotheses."""
    from harness.engine.scoring import fill_scores

    registry = process_registry()
    specs = [registry.metric(name).spec for name in config.metrics]
    cells, filled = fill_scores(store, store.cells(keys), specs)
    if filled:
        print(f"scored {filled} stored cell(s) for {', '.join(config.metrics)} from their stored hypotheses "
              "(no training)")
    return cells


def _print_matrix(config: RunConfig, cells) -> None:
    from harness.report.tables import cells_frame, matrix, protocols_of, summary_frame

    summary = summary_frame(cells_frame(cells))
    if summary.empty:
        return
    directions = _directions(process_registry())
    protocols = protocols_of(summary)
    for protocol in protocols:
        for metric in config.metrics[:1]:
            m = matrix(summary, metric, "test", directions.get(metric, True), protocol)
            if m.models:
                where = f", protocol {protocol}" if len(protocols) > 1 or protocol != "finetune" else ""
                print(f"\n{metric.upper()} on test{where} (mean ± sd over {len(config.seeds)} seed(s); "
                      f"* best per language, {m.direction()})")
                print(m.table())
                if m.footnote():
                    print(m.footnote())


def _dataset_languages(spec) -> str:
    """The languages column of ``bench list --datasets``: the codes, or what decides them."""
    if not spec.languages:
        return "from its options (see its docs)"
    shown = " ".join(spec.languages)
    if spec.list_languages is not None:
        shown += " (those present in the configured data)"
    return shown


def _cmd_list(args: argparse.Namespace) -> int:
    registry = process_registry()
    show_all = not (args.models or args.datasets or args.metrics or args.languages or args.executors
                    or args.protocols)
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


def _existing_store(config: RunConfig):
    """The configured results store, which must exist already (reading commands)."""
    from harness.store.results import ResultStore

    if not config.store.exists():
        raise BenchError(f"no results store at {config.store}", "run `bench run` first (or pass --store)")
    return ResultStore(config.store, readonly=True)


def _stored_cells(config: RunConfig, plan_out: dict | None = None):
    """The stored results of the configured matrix, every configured metric scored (and how many
    cells the matrix has). ``plan_out`` receives the plan's sweep (``sweep``) and each cell's
    point of it (``points``, by key)."""
    from harness.run.runner import plan_run

    plan = plan_run(config, process_registry())
    if plan_out is not None:
        plan_out.update(sweep=plan.sweep, points={c.key: c.point for c in plan.cells if c.point})
    readable = [c for c in plan.cells if "unavailable" not in (c.identity.get("data") or {})]
    unreadable = [c for c in plan.cells if "unavailable" in (c.identity.get("data") or {})]
    with _existing_store(config) as store:
        keys = [c.key for c in readable]
        ambiguous: dict[str, int] = {}
        if unreadable:  # results are keyed by their data: match them by the data they recorded
            recorded, ambiguous = _recorded_data(store, unreadable)
            keys += list(recorded)
        cells = _scored(config, store, keys)
    if ambiguous:
        print("warning: the data of " + ", ".join(f"{k} ({n} versions stored)" for k, n in sorted(ambiguous.items()))
              + " cannot be read here, and which version is meant cannot be told: those results are left out "
              "(report where the data is: release or BENCH_COMMON_VOICE set)", file=sys.stderr)
    if not cells:
        names = sorted({f"{c.cell.dataset}:{c.cell.language}" for c in unreadable})
        raise BenchError("none of the configured cells has a result in the store yet"
                         + (f" (the data of {', '.join(names)} cannot be read here, and results are keyed by "
                            "the data they were computed on)" if names else ""),
                         "run `bench run` with the same selection first, or choose --preset/--models/--langs"
                         + ("; or run this where the data is (release or BENCH_COMMON_VOICE set)"
                            if names else ""))
    return cells, len(plan.cells)


def _recorded_data(store, planned) -> tuple[list[str], dict[str, int]]:
    """Stored cells standing in for ``planned`` cells whose data cannot be read here: those whose
    recorded identity is the planned one but for the data, when the store holds results of one
    version of that dataset:language only. Returns their keys and, per dataset:language with
    several versions stored, how many (those are left out)."""
    from harness.plan.cells import canonical_json

    def without_data(identity):
        return canonical_json({k: v for k, v in identity.items() if k != "data"})

    wanted = {without_data(c.identity): f"{c.cell.dataset}:{c.cell.language}" for c in planned}
    found: dict[str, dict[str, list[str]]] = {}  # dataset:language -> data identity -> keys
    for cell in store.cells():
        identity = cell.record.identity or {}
        place = wanted.get(without_data(identity)) if "data" in identity else None
        if place is not None:
            found.setdefault(place, {}).setdefault(canonical_json(identity["data"]), []).append(cell.key)
    keys: list[str] = []
    ambiguous: dict[str, int] = {}
    for place, versions in sorted(found.items()):
        if len(versions) == 1:
            (data, stood_in), = versions.items()
            keys += stood_in
            print(f"note: the data of {place} cannot be read here: its {len(stood_in)} stored result(s) are "
                  f"reported by the data they recorded ({_data_label(data)})", file=sys.stderr)
        else:
            ambiguous[place] = len(versions)
    return keys, ambiguous


def _data_label(data_json: str) -> str:
    data = json.loads(data_json)
    label = data.get("release") or data.get("version") if isinstance(data, dict) else None
    return f"release {label}" if label else "identity " + hashlib.sha256(data_json.encode()).hexdigest()[:12]


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report.tables import write_reports

    config = _config(args)
    swept: dict = {}
    cells, planned = _stored_cells(config, swept)
    out = config.report_dir if args.out is None else Path(args.out)
    with _existing_store(config) as store:  # test hypotheses: sample transcripts, bootstrap intervals
        hypotheses = {c.key: store.hypotheses(c.key, "test") for c in cells}
    paths = write_reports(cells, out, config.metrics, Path(args.json) if args.json else None,
                          _directions(process_registry()), hypotheses, swept["sweep"], swept["points"])
    payload = json.loads(paths["json"].read_text())
    if swept["sweep"]:
        _print_choices(payload)
        cells = _chosen_cells(config, cells, swept)
    _print_matrix(config, cells)
    for group, items in payload["findings"].items():
        print(f"\nStatistics ({group}, {config.metrics[0].upper()} on test):\n"
              + "\n".join(f"- {f.get('text', f['sentence'])}" for f in items))
    statistics = payload.get("statistics", {})
    if statistics.get("correction"):
        print(statistics["correction"])
    for why in statistics.get("uninformative_metrics", {}).values():
        print(f"Note: {why}")
    missing = planned - len(cells)
    print(f"\n{len(cells)} of {planned} cells have results" + (f" ({missing} not run yet)" if missing else ""))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _chosen_cells(config: RunConfig, cells, swept: dict):
    """A sweep's cells at the points chosen on dev (data regimes named apart)."""
    from harness.report.selection import regime_cells, select_on_dev

    metric = config.metrics[0]
    selection = select_on_dev(cells, swept["sweep"], metric, _directions(process_registry()).get(metric, True),
                              swept["points"])
    return regime_cells([c for c in cells if c.key in selection.chosen_keys], swept["sweep"], selection.point_by_key)


def _print_choices(payload: dict) -> None:
    sweep = payload.get("sweep") or {}
    choices = sweep.get("choices") or []
    if not choices or not any(a["chosen_on_dev"] for a in sweep["axes"]):
        return
    print("\n" + sweep["statement"])
    rows = [[c["model"] if c["protocol"] == "finetune" else f"{c['model']} [{c['protocol']}]", c["dataset"]
             + (" [" + ", ".join(f"{k}={v:g}" for k, v in c["regime"].items()) + "]" if c["regime"] else ""),
             c["language"], ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in c["chosen"].items()),
             f"{c['dev']:.3f}", "; ".join(
                 ([f"only {len(c['candidates'])} of {c['grid_points']} grid points scored on dev"]
                  if len(c["candidates"]) < c["grid_points"] else [])
                 + (["best at the grid's edge: widen it"] if c["at_edge"] else []))] for c in choices]
    print(tabulate(rows, headers=["model", "dataset", "language", "chosen on dev", f"dev {sweep['metric'].upper()}",
                                  "note"], disable_numparse=True))


def _cmd_compare(args: argparse.Namespace) -> int:
    from harness.report.compare import compare, load_results, parse_tolerances, results_from_summary
    from harness.report.tables import cells_frame, summary_frame

    baseline = load_results(args.baseline)
    if not baseline:
        raise BenchError(f"baseline {args.baseline!r} holds no results, so nothing can be compared",
                         "write the baseline with `bench report --json FILE` after a `bench run` of the same selection")
    if args.current:
        current = load_results(args.current)
    else:  # the summary of the stored cells, without writing a report (a sweep: its cells chosen on dev)
        from harness.report.summaries import across_languages, compare_entries

        config = _config(args)
        swept: dict = {}
        cells, _ = _stored_cells(config, swept)
        if swept["sweep"]:
            cells = _chosen_cells(config, cells, swept)
        summary = summary_frame(cells_frame(cells))
        current = results_from_summary(summary.to_dict(orient="records"))
        current |= compare_entries([a.as_dict() for a in across_languages(summary, _directions(process_registry()))])
    if args.metrics is not None:  # --metrics: compare only these
        wanted = {m.strip() for m in args.metrics.split(",") if m.strip()}
        baseline = {k: v for k, v in baseline.items() if k[4] in wanted}
        current = {k: v for k, v in current.items() if k[4] in wanted}
        if not baseline:
            raise BenchError(f"the baseline has no results for metric(s) {', '.join(sorted(wanted))}",
                             "choose --metrics among the baseline's metrics, or leave --metrics out")
    higher = frozenset(n for n, reg in process_registry().metrics.items() if not reg.spec.lower_is_better)
    result = compare(baseline, current, parse_tolerances(args.abs), parse_tolerances(args.rel), higher)

    def label(key: tuple[str, ...]) -> str:
        return f"{key[0]} {key[1]}:{key[2]} {key[3]} {key[4]}"

    for title, items in (("regressions", result.regressions), ("improvements", result.improvements)):
        if items:
            print(f"{title}:")
            print(tabulate([[label(d.key), f"{d.baseline:.4f}", f"{d.current:.4f}", f"{d.change:+.4f}",
                             f"{d.tolerance:.4f}"] for d in items],
                           headers=["cell", "baseline", "current", "change", "tolerance"], disable_numparse=True))
            print()
    for title, keys in (("missing from the current results", result.missing),
                        ("not in the baseline (new)", result.extra)):
        if keys:
            print(f"{title}: " + ", ".join(label(k) for k in keys))
    print(f"{len(result.deltas)} compared: {len(result.regressions)} regressions, "
          f"{len(result.improvements)} improvements, {len(result.missing)} missing, {len(result.extra)} new")
    if result.failed(args.allow_missing):
        print("FAIL: " + ("regression beyond tolerance" if result.regressions else "cells missing"), file=sys.stderr)
        return 1
    if not result.deltas:  # nothing in common: never "OK"
        print("FAIL: no cell was compared (the current results share no model, dataset, language, split and "
              "metric with the baseline)", file=sys.stderr)
        return 1
    print("OK")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="fine-tune and evaluate every cell of the matrix not yet stored")
    _selection_flags(run)
    run.add_argument("--dry-run", action="store_true", help="list the cells and whether they are stored")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (one line per cell)")
    run.add_argument("--executor", help="where cells are computed: local (default), ray, slurm, or a plugin's")
    run.add_argument("--retry-failed", action="store_true", help="compute again the cells that failed before")
    run.add_argument("--keep-going", action="store_true",
                     help="when some models or languages cannot be used (missing files), compute the others and "
                          "record their cells as failed instead of stopping before any cell")
    run.set_defaults(func=_cmd_run)

    lst = sub.add_parser("list", help="list models, datasets (with languages) and metrics, and their origin")
    lst.add_argument("--models", action="store_true")
    lst.add_argument("--datasets", action="store_true")
    lst.add_argument("--metrics", action="store_true")
    lst.add_argument("--executors", action="store_true")
    lst.add_argument("--protocols", action="store_true", help="evaluation protocols and their options")
    lst.add_argument("--languages", action="store_true",
                     help="the study's languages: family, script, case, spaces, and which datasets have them")
    lst.set_defaults(func=_cmd_list)

    pretrain = sub.add_parser("pretrain", help="pre-train the selected models that are made here "
                                                "(tiny-phone-*, tiny-ssl-*), unless already in the cache")
    _selection_flags(pretrain)
    pretrain.add_argument("--force", action="store_true", help="pre-train again even when cached")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    pretrain.set_defaults(func=_cmd_pretrain)

    from harness.cli import download as download_command

    download_command.add_parser(sub, _selection_flags)

    failures = sub.add_parser("failures", help="show the failed cells of the configured selection with their errors")
    _selection_flags(failures)
    failures.add_argument("--all", action="store_true", help="every failure in the store, whatever the selection")
    failures.set_defaults(func=_cmd_failures)

    report = sub.add_parser("report", help="print the model x language matrix and write CSV, JSON, Markdown")
    _selection_flags(report)
    report.add_argument("--out", help="directory for the report files (default: run.report_dir)")
    report.add_argument("--json", metavar="FILE", help="also write the results JSON here (a baseline for compare)")
    report.set_defaults(func=_cmd_report)

    cmp = sub.add_parser("compare", help="compare results with a baseline; exit 1 on a regression (for CI)")
    cmp.add_argument("baseline", help="JSON written by `bench report --json FILE`")
    cmp.add_argument("current", nargs="?", help="JSON to compare (default: the configured cells in the store)")
    _selection_flags(cmp)
    cmp.add_argument("--abs", action="append", default=[], metavar="METRIC=X",
                     help="absolute tolerance per metric (default 0.01), e.g. --abs cer=0.02")
    cmp.add_argument("--rel", action="append", default=[], metavar="METRIC=X",
                     help="relative tolerance per metric (share of the baseline), e.g. --rel wer=0.05")
    cmp.add_argument("--allow-missing", action="store_true", help="cells missing from the current results do not fail")
    cmp.set_defaults(func=_cmd_compare)

    from harness.cli import merge
    merge.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
