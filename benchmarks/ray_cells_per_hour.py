"""Cells per hour through the Ray executor with 1 and 2 workers (and in-process, for reference).

A fixed small matrix (tiny models, synthetic speech already in the cache, a few hundred
updates per cell) is run from scratch into a fresh store for each set-up, each in its own
``bench run`` process; the wall time includes starting Ray and its workers.

    python benchmarks/ray_cells_per_hour.py                 # 2 models x 2 languages, 150 updates
    python benchmarks/ray_cells_per_hour.py --steps 400 --langs de,es,ru
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
[run]
models = [{models}]
datasets = ["synthetic"]
langs = [{langs}]
seeds = 1
[train]
steps = {steps}
"""


def _bench(config: Path, store: Path, *args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", "--config", str(config), "--store", str(store),
                             "--no-progress", *args], capture_output=True, text=True, cwd=config.parent)
    if result.returncode != 0:
        raise SystemExit(f"bench run {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny-wav2vec2,tiny-hubert")
    parser.add_argument("--langs", default="de,es")
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    langs = [x for x in args.langs.split(",") if x]
    cells = len(models) * len(langs)
    quote = lambda items: ", ".join(f'"{x}"' for x in items)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(CONFIG.format(models=quote(models), langs=quote(langs), steps=args.steps))
        # synthesise (or load) the data once, outside the measurements
        _bench(config, Path(tmp) / "warm.sqlite", "--set", "train.steps=1", "--models", models[0])
        rows = []
        setups = [
            ("in-process (local, 2 threads)", ["--set", "run.threads=2"]),
            ("ray, 1 worker (1 CPU per cell)", ["--executor", "ray", "--set", "executors.ray.num_cpus=1"]),
            ("ray, 2 workers (1 CPU per cell)", ["--executor", "ray", "--set", "executors.ray.num_cpus=2"]),
        ]
        for i, (label, extra) in enumerate(setups):
            seconds = _bench(config, Path(tmp) / f"store{i}.sqlite", *extra)
            rows.append((label, seconds, cells / seconds * 3600))
    print(f"{cells} cells ({', '.join(models)} x {', '.join(langs)}), {args.steps} updates each, "
          f"{os.cpu_count()} CPU cores")
    width = max(len(r[0]) for r in rows)
    print(f"{'set-up':<{width}}  {'wall s':>7}  {'cells/hour':>10}")
    for label, seconds, per_hour in rows:
        print(f"{label:<{width}}  {seconds:7.1f}  {per_hour:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
