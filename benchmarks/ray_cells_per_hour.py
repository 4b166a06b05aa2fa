"""Cells per hour through the Ray executor with 1 and 2 workers or nodes (and in-process, for reference).

A fixed small matrix (tiny models, synthetic speech already in the cache, a few hundred
updates per cell) is run from scratch into a fresh store for each set-up, each in its own
``bench run`` process.

Without ``--cluster``, Ray runs as a local instance of 1 and then 2 CPUs that each ``bench run``
starts (its start-up is in the wall time). With ``--cluster netns`` (Linux, root), a real
multi-node cluster is started with ``ci/ray/netns.sh``: a head node alone, then a head and a
worker node, each node in its own network namespace with 1 CPU; ``bench run`` joins it from the
head's namespace (``executors.ray.address``) and the wall time excludes starting the nodes.

    python benchmarks/ray_cells_per_hour.py                 # 2 models x 2 languages, 150 updates
    python benchmarks/ray_cells_per_hour.py --steps 400 --langs de,es,ru
    python benchmarks/ray_cells_per_hour.py --cluster netns  # 1 node, then 2 nodes
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


NETNS = REPO / "ci" / "ray" / "netns.sh"
NETNS_PREFIX = "benchraybench"
HEAD_ADDRESS = "10.200.0.1:6379"


def _bench(config: Path, store: Path, *args: str, prefix: tuple[str, ...] = ()) -> float:
    start = time.perf_counter()
    result = subprocess.run([*prefix, sys.executable, "-m", "harness.cli.main", "run", "--config", str(config),
                             "--store", str(store), "--no-progress", *args], capture_output=True, text=True,
                            cwd=config.parent)
    if result.returncode != 0:
        raise SystemExit(f"bench run {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny-wav2vec2,tiny-hubert")
    parser.add_argument("--langs", default="de,es")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--cluster", choices=("local", "netns"), default="local",
                        help="local: Ray instances started by bench run; netns: a multi-node cluster in "
                             "network namespaces (ci/ray/netns.sh, needs root)")
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
        if args.cluster == "netns":
            rows = _on_namespaced_cluster(config, Path(tmp), cells)
        else:
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
    if args.cluster == "netns":
        print(f"2 nodes / 1 node: {rows[1][2] / rows[0][2]:.2f}x (ideal 2x)")
    return 0


def _on_namespaced_cluster(config: Path, tmp: Path, cells: int) -> list[tuple[str, float, float]]:
    """The matrix on a cluster of 1 node (the head), then of 2 (head + worker), 1 CPU each."""
    env = {**os.environ, "BENCH_RAY_NETNS": NETNS_PREFIX, "RAY": str(Path(sys.executable).parent / "ray")}
    in_head = ("ip", "netns", "exec", f"{NETNS_PREFIX}-head")
    extra = ("--set", "run.threads=1", "--executor", "ray", "--set", f'executors.ray.address="{HEAD_ADDRESS}"')
    rows = []
    for nodes in (1, 2):
        try:
            started = subprocess.run([str(NETNS), "start", str(nodes - 1)], env=env, capture_output=True, text=True)
            if started.returncode != 0:
                raise SystemExit(f"ci/ray/netns.sh start failed:\n{started.stdout}{started.stderr}")
            seconds = _bench(config, tmp / f"nodes{nodes}.sqlite", *extra, prefix=in_head)
        finally:  # never leave Ray nodes running
            subprocess.run([str(NETNS), "stop"], env=env, capture_output=True)
        label = "ray cluster, 1 node (1 CPU)" if nodes == 1 else f"ray cluster, {nodes} nodes (1 CPU each)"
        rows.append((label, seconds, cells / seconds * 3600))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
