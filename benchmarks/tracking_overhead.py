"""What experiment trackers cost the training loop: the same cell's updates without and with them.

One cell of the default configuration (tiny-wav2vec2, synthetic speech of one language, 150
updates) is fine-tuned in this process ``--repeats`` times in each arm, the arms alternating:
without trackers, and with every installed built-in tracker (TensorBoard, MLflow, W&B offline)
receiving its events exactly as in ``bench run`` (a cell-scope :class:`TrackerSet` fed by the
loop's ``on_log`` and ``on_dev``, writing under a temporary folder). It prints the median
seconds per update of each arm and their difference (wall clock, so other load on the machine
shows there too), and, measured exactly, the time the loop spends handing events over
(queueing them) and the time the trackers take on their own thread, per event and as a share
of the training time.

    python benchmarks/tracking_overhead.py                       # 150 updates, 3 repeats
    python benchmarks/tracking_overhead.py --steps 300 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-wav2vec2")
    parser.add_argument("--lang", default="es")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=0, help="train.eval_every (dev events as well)")
    parser.add_argument("--trackers", default="tensorboard,mlflow,wandb", help="those installed are used")
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "bench.toml"))
    parser.add_argument("--train-minutes", type=float, help="synthetic training speech (default: bench.toml's)")
    parser.add_argument("--cache-dir", help="run.cache_dir (default: bench.toml's, $BENCH_CACHE_DIR)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    from harness.api import ProtocolRequest
    from harness.plan.cells import Cell
    from harness.plan.config import load_config
    from harness.plan.planner import dataset_request, model_cache_dir, resolve_models
    from harness.plugins import load_registry
    from harness.api import TrackerRequest
    from harness.run.tracking import TrackerSet, resolve_trackers, tracking_directory
    from harness.tracking import CellStarted, DevEvaluated, TrainingUpdate

    modules = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
    trackers = [t for t in args.trackers.split(",") if importlib.util.find_spec(modules.get(t, t)) is not None]
    work = Path(tempfile.mkdtemp(prefix="bench-tracking-overhead-"))
    overrides: dict = {"run": {"models": [args.model], "trackers": trackers, "store": str(work / "results.sqlite")},
                       "train": {"steps": args.steps, "eval_every": args.eval_every},
                       "trackers": {"wandb": {"mode": "offline"}} if "wandb" in trackers else {}}
    if args.cache_dir:
        overrides["run"]["cache_dir"] = args.cache_dir
    if args.train_minutes:
        overrides["datasets"] = {"synthetic": {"train_minutes": args.train_minutes,
                                               "dev_minutes": args.train_minutes / 4,
                                               "test_minutes": args.train_minutes / 4}}
    config = load_config(args.config, overrides=overrides)
    registry = load_registry()
    (model, model_options), = resolve_models(config, registry).values()
    data = registry.dataset("synthetic").spec.load(dataset_request(
        config, "synthetic", args.lang, 0, dict(config.dataset_options.get("synthetic", {}))))
    runtime = dataclasses.replace(config.runtime, checkpoint_minutes=0)
    cell = Cell(args.model, "synthetic", args.lang, 0)

    class Timed:
        """A tracker instance whose handle and close are timed on the trackers' thread, by event type:
        wall-clock seconds, and CPU seconds of that thread (what competes with the loop for the cores)."""

        def __init__(self, tracker) -> None:
            self.tracker = tracker
            self.wall: dict[str, float] = {}
            self.cpu: dict[str, float] = {}

        def _timed(self, what: str, call, *args) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            call(*args)
            self.wall[what] = self.wall.get(what, 0.0) + time.perf_counter() - wall
            self.cpu[what] = self.cpu.get(what, 0.0) + time.thread_time() - cpu

        def handle(self, event) -> None:
            self._timed(type(event).__name__, self.tracker.handle, event)

        def close(self) -> None:
            self._timed("close", self.tracker.close)

    def open_timed(run_id: str, key: str) -> tuple[TrackerSet, list[Timed], float]:
        start = time.perf_counter()
        instances = []
        for tracker in resolve_trackers(config, registry):
            request = TrackerRequest(tracker.name, tracker.options, tracking_directory(config, tracker.name), run_id,
                                     "cell", cell, key)
            instances.append((tracker.name, Timed(tracker.item.spec.create(request))))
        return TrackerSet(instances), [t for _, t in instances], time.perf_counter() - start

    def one(tracked: bool, repeat: int) -> dict:
        run_id, key = f"overhead-{repeat}", f"overhead{repeat:02d}"
        tracking, timed, opened = open_timed(run_id, key) if tracked else (TrackerSet.empty(), [], 0.0)
        listeners = {}
        in_loop = [0.0, 0]
        if tracked:
            tracking.emit(CellStarted(run_id, cell, key, {"cell": dataclasses.asdict(cell)}))

            def on_log(log) -> None:
                start = time.perf_counter()
                tracking.emit(TrainingUpdate(run_id, cell, key, log.update, log.total, log.loss, log.lr, log.seconds))
                in_loop[0] += time.perf_counter() - start
                in_loop[1] += 1

            def on_dev(update: int, cer: float) -> None:
                start = time.perf_counter()
                tracking.emit(DevEvaluated(run_id, cell, key, update, cer))
                in_loop[0] += time.perf_counter() - start
                in_loop[1] += 1

            listeners = {"on_log": on_log, "on_dev": on_dev}
        request = ProtocolRequest(model.spec.build, data, args.lang, 0, config.train, runtime, {}, model_options,
                                  model_cache_dir=model_cache_dir(config), **listeners)
        outcome = registry.protocol("finetune").spec.run(request)
        start = time.perf_counter()
        warnings = tracking.close()
        info = outcome.train_info
        return {"tracked": tracked, "seconds_per_update": info["train_seconds"] / info["updates"],
                "train_seconds": info["train_seconds"], "events_in_loop": in_loop[1],
                "loop_seconds_in_events": in_loop[0],
                "thread_wall": {k: sum(t.wall.get(k, 0.0) for t in timed) for k in {k for t in timed for k in t.wall}},
                "thread_cpu": {k: sum(t.cpu.get(k, 0.0) for t in timed) for k in {k for t in timed for k in t.cpu}},
                "open_seconds": opened, "close_seconds": time.perf_counter() - start,
                "warnings": [line for _, line in warnings]}

    rows = []
    for repeat in range(args.repeats):
        for tracked in ((False, True) if repeat % 2 == 0 else (True, False)):
            rows.append(one(tracked, repeat))
            print(f"  repeat {repeat}, {'with' if tracked else 'without'} trackers: "
                  f"{rows[-1]['seconds_per_update'] * 1000:.1f} ms/update", flush=True)

    without = [r["seconds_per_update"] for r in rows if not r["tracked"]]
    with_ = [r["seconds_per_update"] for r in rows if r["tracked"]]
    tracked = [r for r in rows if r["tracked"]]
    events = sum(r["events_in_loop"] for r in tracked)
    in_loop = sum(r["loop_seconds_in_events"] for r in tracked) / max(events, 1)
    trained = sum(r["train_seconds"] for r in tracked)

    def per(kind: str, what: str) -> float:
        return sum(r[kind].get(what, 0.0) for r in tracked)

    updates = per("thread_wall", "TrainingUpdate"), per("thread_cpu", "TrainingUpdate")
    n_updates = sum(r["events_in_loop"] for r in tracked)
    share = (updates[1] + per("thread_cpu", "DevEvaluated")) / trained
    summary = {"model": args.model, "language": args.lang, "steps": args.steps, "repeats": args.repeats,
               "trackers": trackers, "seconds_per_update_without": statistics.median(without),
               "seconds_per_update_with": statistics.median(with_),
               "overhead_fraction": statistics.median(with_) / statistics.median(without) - 1,
               "loop_seconds_per_event": in_loop, "tracker_thread_cpu_share_of_training": share,
               "open_seconds": statistics.median(r["open_seconds"] for r in tracked),
               "close_seconds": statistics.median(r["close_seconds"] for r in tracked), "runs": rows}
    print(f"{args.model}, synthetic {args.lang}, {args.steps} updates, {args.repeats} repeat(s) per arm; "
          f"trackers: {', '.join(trackers) or 'none installed'}")
    for name, values in (("without trackers", without), ("with trackers", with_)):
        print(f"{name + ':':18} {statistics.median(values) * 1000:7.1f} ms/update (median; runs "
              + ", ".join(f"{v * 1000:.0f}" for v in values) + ")")
    print(f"difference of the medians: {100 * summary['overhead_fraction']:+.1f} % (wall clock: other load on the "
          "machine shows here too)")
    loop_share = in_loop * events / sum(r["train_seconds"] for r in tracked)
    summary["loop_share_of_training"] = loop_share
    print(f"in the loop: {in_loop * 1e6:.1f} µs per event ({events // max(len(tracked), 1)} events per cell: one "
          f"every 25 updates and per dev scoring), {loop_share:.5%} of the training time")
    cells = max(len(tracked), 1)
    print(f"on the trackers' thread, per loss event: {updates[0] / max(n_updates, 1) * 1000:.2f} ms "
          f"({updates[1] / max(n_updates, 1) * 1000:.2f} ms CPU), {share:.3%} of the training time in CPU")
    print(f"per cell, outside the loop: making the trackers {summary['open_seconds']:.2f} s, starting the cell's runs "
          f"{per('thread_wall', 'CellStarted') / cells:.2f} s ({per('thread_cpu', 'CellStarted') / cells:.2f} s CPU) "
          f"while its data and features are prepared, finishing them {summary['close_seconds']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
