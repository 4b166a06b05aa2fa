"""How the default study's time grows: with the number of cells, and a cell's with its training data.

Two tables:

1. **Cells**: from a results store written by ``bench run`` (``--store``, default
   ``.bench/results.sqlite``; the run's start is taken as the first cell's start less the time
   it waited, see ``--started``), the wall time at which the 1st, 9th, 18th, 27th, ... cell was
   stored, and the time per cell between those points. A run whose cells all cost the same
   grows linearly after its one-off work (synthesis, pre-training).
2. **Training data**: one default cell (tiny-phone-es when it is in the cache, else
   tiny-wav2vec2; Spanish, seed 0, 150 updates) computed with 4, 8, 16 and 32 minutes of
   synthetic training speech, each in a fresh ``bench run`` with the shared feature store off:
   total, feature-caching, training and evaluation seconds. The updates are fixed (150 x 16 s
   batches), so only the feature encoder's pass over the training audio grows with it.

    python benchmarks/growth.py --store /path/to/results.sqlite --started EPOCH_SECONDS
    python benchmarks/growth.py --minutes 4 8 16 32      # table 2 only (a few minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cells_table(store: Path, started: float | None) -> list[list[str]]:
    with sqlite3.connect(store) as db:
        rows = db.execute("select finished_at, duration_s from cells order by finished_at").fetchall()
    if not rows:
        raise SystemExit(f"{store} holds no cells")
    start = started if started is not None else rows[0][0] - rows[0][1]
    marks = sorted({k for k in (1, 9, 18, 27, 36, 54, len(rows)) if k <= len(rows)})
    out, previous = [], (0, start)
    for k in marks:
        at = rows[k - 1][0] - start
        per = (rows[k - 1][0] - previous[1]) / (k - previous[0]) if k > previous[0] else float("nan")
        out.append([str(k), f"{at:.0f}", f"{per:.1f}"])
        previous = (k, rows[k - 1][0])
    return out


def one_cell(minutes: float, model: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "r.sqlite"
        command = [sys.executable, "-c", "import sys; from harness.cli.main import main; sys.exit(main(sys.argv[1:]))",
                   "run", "--models", model, "--langs", "es", "--seeds", "1",
                   "--store", str(store), "--no-progress", "--set", f"datasets.synthetic.train_minutes={minutes}",
                   "--set", "run.feature_store_gb=0"]
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with sqlite3.connect(store) as db:
            record, duration = db.execute("select record, duration_s from cells").fetchone()
    train = json.loads(record)["train"]
    return {"minutes": minutes, "total": duration, "encode": train.get("encode_seconds") or 0.0,
            "train": train["train_seconds"], "eval": sum((train.get("eval_seconds") or {}).values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=None, help="a results store written by bench run (table 1)")
    parser.add_argument("--started", type=float, default=None, help="when that run started (epoch seconds)")
    parser.add_argument("--minutes", type=float, nargs="*", default=[4, 8, 16, 32],
                        help="training minutes for table 2 (none: skip it)")
    args = parser.parse_args(argv)
    from tabulate import tabulate

    if args.store:
        print("1. cells stored against wall time")
        print(tabulate(cells_table(Path(args.store), args.started),
                       headers=["cells", "seconds since start", "seconds per cell since the previous row"]))
        print()
    if args.minutes:
        sys.path.insert(0, str(REPO))
        from harness.plan.config import load_config
        from plugins.models.pretrained import BUILT_IN, checkpoint_dir, read_manifest

        config = load_config(None)
        cached = read_manifest(checkpoint_dir(config.cache_dir / "models", BUILT_IN["tiny-phone-es"])) is not None
        model = "tiny-phone-es" if cached else "tiny-wav2vec2"
        rows = []
        for minutes in args.minutes:
            m = one_cell(minutes, model)
            rows.append([f"{minutes:g}", f"{m['total']:.1f}", f"{m['encode']:.1f}", f"{m['train']:.1f}",
                         f"{m['eval']:.1f}"])
        print(f"2. one cell ({model} / synthetic:es / seed 0, 150 updates, threads: "
              f"{os.environ.get('OMP_NUM_THREADS', 'torch default')}) against its training speech")
        print(tabulate(rows, headers=["train minutes", "cell s", "feature caching s", "updates s", "evaluation s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
