"""The ray executor on a real multi-node Ray cluster: a head and a worker node, each started with
`ray start` in its own network namespace on this machine (ci/ray/netns.sh; addresses 10.200.0.x
exist only inside those namespaces). The driver, `bench run`, runs in the head's namespace.

Needs root and `ip netns` (Linux); skipped otherwise, unless BENCH_REQUIRE_RAY_CLUSTER is set (CI),
which makes a missing capability a failure. Every cluster a test starts is stopped by its fixture,
also when the test fails."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store.results import ResultStore

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "ci" / "ray" / "netns.sh"
HEAD_IP, WORKER_IP = "10.200.0.1", "10.200.0.2"
ADDRESS = f"{HEAD_IP}:6379"


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) not found"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'bench[ray]')"
    probe = f"benchray-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


_WHY_NOT = _why_not()
if _WHY_NOT is not None and os.environ.get("BENCH_REQUIRE_RAY_CLUSTER"):  # CI: a failure, not a skip
    raise RuntimeError(f"BENCH_REQUIRE_RAY_CLUSTER is set but {_WHY_NOT}")
pytestmark = [pytest.mark.raycluster, pytest.mark.slow,
              pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")]


class Cluster:
    """A cluster started by ci/ray/netns.sh under its own namespace prefix."""

    def __init__(self, workers: int) -> None:
        self.prefix = f"benchray{os.getpid()}"
        self.env = {**os.environ, "BENCH_RAY_NETNS": self.prefix, "RAY": str(Path(sys.executable).parent / "ray")}
        self.workers = workers

    def script(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=self.env, timeout=timeout)

    def start(self) -> None:
        started = self.script("start", str(self.workers))
        if started.returncode != 0:
            raise RuntimeError(f"ci/ray/netns.sh start failed:\n{started.stdout}\n{started.stderr}")

    def stop(self) -> None:
        self.script("stop", timeout=120)

    def command(self, node: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", f"{self.prefix}-{node}", *args]

    def processes(self, node: str) -> dict[int, str]:
        """Command lines of the processes in a node's namespace, by id."""
        listed = subprocess.run(["ip", "netns", "pids", f"{self.prefix}-{node}"], capture_output=True, text=True)
        found = {}
        for pid in listed.stdout.split():
            try:
                found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # ended meanwhile
                pass
        return found


def _remove_stale_clusters() -> None:
    """Namespaces left by a test session that was killed before its finalizers ran (their owner's
    process id is gone) are stopped and deleted; clusters of live sessions are left alone."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    owners = {int(m.group(1)) for m in re.finditer(r"^benchray(\d+)-(?:head|w\d+)\b", listed, re.MULTILINE)}
    for owner in owners - {os.getpid()}:
        if not Path(f"/proc/{owner}").exists():
            subprocess.run([str(SCRIPT), "stop"], env={**os.environ, "BENCH_RAY_NETNS": f"benchray{owner}"},
                           capture_output=True, timeout=120)


@pytest.fixture()
def ray_cluster():
    _remove_stale_clusters()
    cluster = Cluster(workers=1)
    try:
        cluster.start()
        yield cluster
    finally:  # always: Ray nodes left running would eat this machine's CPUs
        cluster.stop()


def _driver(cluster: Cluster, config: Path, store: Path, cache_dir: Path, *args: str) -> subprocess.Popen:
    """`bench run` with the ray executor, in the head node's namespace."""
    command = cluster.command("head", sys.executable, "-m", "harness.cli.main", "run", "--config", str(config),
                              "--store", str(store), "--no-progress", "--set", "run.threads=1", *args,
                              "--executor", "ray", "--set", f'executors.ray.address="{ADDRESS}"')
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=config.parent,
                            env={**os.environ, "BENCH_CACHE_DIR": str(cache_dir)})


def _cells(path: Path):
    with ResultStore(path, readonly=True) as store:
        return {(c.model, c.language, c.seed): c for c in store.cells()}


def _numbers(cells) -> dict:
    return {key: (c.metrics, c.record.train.loss_curve) for key, c in cells.items()}


def _reference(bench, config: Path, store: Path, *args: str) -> dict:
    """The same cells computed in this process, one thread each, as the cluster computes them."""
    code, _, err = bench("run", "--config", str(config), "--store", str(store), "--set", "run.threads=1", *args)
    assert code == 0, err
    return _numbers(_cells(store))


def test_a_matrix_runs_across_two_nodes_and_records_where(ray_cluster, bench, small_config, cache_dir, tmp_path):
    driver = _driver(ray_cluster, small_config, tmp_path / "cluster.sqlite", cache_dir)
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    assert "4 cells computed" in out

    cells = _cells(tmp_path / "cluster.sqlite")
    assert len(cells) == 4
    nodes = [c.record.node for c in cells.values()]
    assert all(n["executor"] == "ray" and n["host"] for n in nodes)
    assert {n["address"] for n in nodes} == {HEAD_IP, WORKER_IP}  # both nodes computed cells
    assert len({n["id"] for n in nodes}) == 2
    assert _numbers(cells) == _reference(bench, small_config, tmp_path / "here.sqlite")


SLOW_CELLS = ("--langs", "de", "--set", "train.steps=60", "--set", "run.checkpoint_minutes=0.002")


def test_a_node_lost_mid_cell_is_recomputed_on_the_survivor(ray_cluster, bench, small_config, cache_dir, tmp_path):
    """The worker node's raylet is killed while it computes a cell: Ray starts the cell again on the
    head, which resumes it from its in-cell checkpoint; nothing is lost or stored twice, and the
    numbers are those of an uninterrupted run."""
    checkpoints = cache_dir / "checkpoints"
    for stale in checkpoints.glob("*.pt"):
        stale.unlink()
    store = tmp_path / "cluster.sqlite"
    driver = _driver(ray_cluster, small_config, store, cache_dir, *SLOW_CELLS)
    try:
        deadline = time.time() + 300
        while True:  # the worker node is mid-cell: its task runs and both cells have a checkpoint
            assert driver.poll() is None and time.time() < deadline, driver.communicate()
            busy = any(cmd.startswith("ray::_compute") for cmd in ray_cluster.processes("w1").values())
            if busy and len(list(checkpoints.glob("*.pt"))) >= 2:
                break
            time.sleep(0.1)
        (raylet,) = [pid for pid, cmd in ray_cluster.processes("w1").items() if cmd.split(" ")[0].endswith("/raylet")]
        os.kill(raylet, signal.SIGKILL)
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, err
    assert "2 cells computed" in out

    cells = _cells(store)
    assert len(cells) == 2
    with ResultStore(store, readonly=True) as db:  # each key once, no failure, no claim left
        keys = [row[0] for row in db._db.execute("SELECT key FROM cells")]
        assert len(keys) == len(set(keys)) == 2
        assert db.failures() == []
        assert db._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    # the lost cell was computed again on the surviving node (the head), from its checkpoint
    assert {c.record.node["address"] for c in cells.values()} == {HEAD_IP}
    resumed = [c for c in cells.values() if c.record.train.resumed_from_update]
    assert len(resumed) == 1 and resumed[0].record.train.resumed_from_update > 0
    assert not any(checkpoints.glob("*.pt"))

    assert _numbers(cells) == _reference(bench, small_config, tmp_path / "here.sqlite", *SLOW_CELLS)
