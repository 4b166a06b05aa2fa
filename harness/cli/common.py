"""What the commands share: the selection flags, the configuration they resolve, and the
stored cells of a selection, scored."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence


from tabulate import tabulate

from harness.errors import BenchError
from harness.plan.config import RunConfig, load_config, parse_set
from harness.plugins import process_registry


def selection_flags(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--decoders", help="comma-separated decoders of the stored outputs (run.decoders; bench list "
                        "--decoders), e.g. greedy,beam-lm: decoded again without retraining")
    parser.add_argument("--store", help="results store (SQLite file)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any bench.toml setting, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                        help="make a setting a dimension of the matrix, e.g. --sweep train.lr=1e-4,3e-4 (repeatable; "
                        "adds to run.sweep); reports keep the value best on dev")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides = parse_set(args.assignments)
    run = overrides.setdefault("run", {})
    for flag in ("models", "datasets", "langs", "seeds", "metrics", "protocols", "store", "executor", "decoders"):
        value = getattr(args, flag, None)
        if value is not None:
            run[flag] = value
    sweeps = getattr(args, "sweeps", None)
    if sweeps:
        from harness.plan.sweep import parse_sweep_flags

        run["sweep"] = {**(run.get("sweep") or {}), **parse_sweep_flags(sweeps)}
    return load_config(args.config, args.preset, overrides)


def metric_directions(registry) -> dict[str, bool]:
    return {name: reg.spec.lower_is_better for name, reg in registry.metrics.items()}


def scored(config: RunConfig, store, keys: Sequence[str]):
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


def print_matrix(config: RunConfig, cells) -> None:
    from harness.report.tables import cells_frame, matrix, protocols_of, summary_frame

    summary = summary_frame(cells_frame(cells))
    if summary.empty:
        return
    directions = metric_directions(process_registry())
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


def existing_store(config: RunConfig):
    """The configured results store, which must exist already (reading commands)."""
    from harness.store.results import ResultStore

    if not config.store.exists():
        raise BenchError(f"no results store at {config.store}", "run `bench run` first (or pass --store)")
    return ResultStore(config.store, readonly=True)


def stored_cells(config: RunConfig, plan_out: dict | None = None):
    """The stored results of the configured matrix, every configured metric scored (and how many
    cells the matrix has). ``plan_out`` receives the plan's sweep (``sweep``) and each cell's
    point of it (``points``, by key)."""
    from harness.run.runner import plan_run

    plan = plan_run(config, process_registry())
    if plan_out is not None:
        plan_out.update(sweep=plan.sweep, points={c.key: c.point for c in plan.cells if c.point})
    readable = [c for c in plan.cells if "unavailable" not in (c.identity.get("data") or {})]
    unreadable = [c for c in plan.cells if "unavailable" in (c.identity.get("data") or {})]
    with existing_store(config) as store:
        keys = [c.key for c in readable]
        ambiguous: dict[str, int] = {}
        if unreadable:  # results are keyed by their data: match them by the data they recorded
            recorded, ambiguous = recorded_data(store, unreadable)
            keys += list(recorded)
        cells = scored(config, store, keys)
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


def recorded_data(store, planned) -> tuple[list[str], dict[str, int]]:
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
                  f"reported by the data they recorded ({data_label(data)})", file=sys.stderr)
        else:
            ambiguous[place] = len(versions)
    return keys, ambiguous


def data_label(data_json: str) -> str:
    data = json.loads(data_json)
    label = data.get("release") or data.get("version") if isinstance(data, dict) else None
    return f"release {label}" if label else "identity " + hashlib.sha256(data_json.encode()).hexdigest()[:12]


def other_decoders(config: RunConfig) -> bool:
    """Whether the configuration asks for decoders besides greedy."""
    return tuple(config.decoders) != ("greedy",)


def decoders_of(config: RunConfig):
    """The configured decoders, checked before anything is decoded (or computed)."""
    from harness.decoding.stage import resolve_decoders

    return resolve_decoders(config.decoders, process_registry(), config.decoder_options)


def decoded(config: RunConfig, store, cells):
    """The cells under every configured decoder (decoded from their stored outputs, no
    training), and the test hypotheses of each view."""
    from harness.decoding.stage import decode_views

    registry = process_registry()
    decoders = decoders_of(config)
    specs = [registry.metric(name).spec for name in config.metrics]
    tune = {d.spec.tune_metric: registry.metric(d.spec.tune_metric).spec for d in decoders
            if d.spec.tuned and d.spec.tune_metric in registry.metrics}
    views = decode_views(cells, store, decoders, specs, config.cache_dir, tune,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
    for note in views.notes:
        print(f"note: {note}", file=sys.stderr)
    return views.cells, views.hypotheses


def print_decoding(cells) -> None:
    """Per decoder: its speed per hour of test audio and the weights chosen on dev."""
    from harness.decoding.stage import speed_rows
    from harness.report.tables import decoding_table

    rows = speed_rows(cells)
    if rows:
        head, body, _ = decoding_table(rows)
        print(tabulate(body, headers=head, disable_numparse=True))


def chosen_cells(config: RunConfig, cells, swept: dict):
    """A sweep's cells at the points chosen on dev (data regimes named apart)."""
    from harness.report.selection import regime_cells, select_on_dev

    metric = config.metrics[0]
    selection = select_on_dev(cells, swept["sweep"], metric, metric_directions(process_registry()).get(metric, True),
                              swept["points"])
    return regime_cells([c for c in cells if c.key in selection.chosen_keys], swept["sweep"], selection.point_by_key)


def print_choices(payload: dict) -> None:
    """What a sweep chose on dev, per model and language, with its notes."""
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

