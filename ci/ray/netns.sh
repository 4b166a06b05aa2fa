#!/usr/bin/env bash
# A multi-node Ray cluster on one machine, for the tests marked `raycluster` (tests/test_ray_cluster.py)
# and benchmarks/ray_cells_per_hour.py --cluster: each Ray node runs in its own network namespace.
#
#   <prefix>-head   10.200.0.1/24 on a bridge; Ray head (GCS on 10.200.0.1:6379), 1 CPU
#   <prefix>-w1     10.200.0.2/24 on a veth whose other end is on that bridge; Ray worker node, 1 CPU
#   <prefix>-w2 ... 10.200.0.3/24 ...
#
# The addresses exist only inside these namespaces: no address, route or link is added to the
# namespace this script is called from, and the namespaces have no default route, so Ray's traffic
# goes only to loopback or to 10.200.0.x. Run as root (CI does); the `ray` on PATH (or $RAY) starts
# the nodes, so activate the environment that has bench installed first.
#
#   ci/ray/netns.sh start [WORKERS]   head + WORKERS worker nodes (default 1), wait until all joined
#   ci/ray/netns.sh stop              end every process in the namespaces, delete them and the temp dirs
#   ci/ray/netns.sh exec NODE CMD...  run CMD in a node's namespace (NODE: head, w1, w2, ...)
#   ci/ray/netns.sh pids NODE         the processes in a node's namespace, one id a line
#   ci/ray/netns.sh status            the namespaces and the nodes Ray knows
#
# $BENCH_RAY_NETNS names the namespaces (default "benchray"), so two clusters can coexist.
# Processes are ended by the ids `ip netns pids` lists for these namespaces only, never by name
# (`ray stop` ends every Ray process of the machine, also those of other users' clusters).
set -euo pipefail

prefix="${BENCH_RAY_NETNS:-benchray}"
ray_bin="${RAY:-ray}"
port=6379
tmp_root="/tmp/${prefix}"          # short: Ray's Unix socket paths must stay under 107 bytes
head_ns="${prefix}-head"
head_ip=10.200.0.1

namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-(head|w[0-9]+)\$" || true; }

end_processes() {  # TERM, then KILL what is left, in one namespace
  local ns="$1" pids
  pids="$(ip netns pids "$ns" 2>/dev/null || true)"
  [ -z "$pids" ] && return 0
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 25); do
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    [ -z "$pids" ] && return 0
    sleep 0.2
  done
  kill -KILL $pids 2>/dev/null || true
  for _ in $(seq 25); do
    [ -z "$(ip netns pids "$ns" 2>/dev/null || true)" ] && return 0
    sleep 0.2
  done
}

stop() {
  local ns
  # workers first, so that the head does not spend its time noticing their deaths
  for ns in $(namespaces | sort -r); do end_processes "$ns"; done
  for ns in $(namespaces); do ip netns delete "$ns"; done
  rm -rf "$tmp_root"
}

node_ns() {
  case "$1" in
    head) echo "$head_ns" ;;
    w[0-9]*) echo "${prefix}-$1" ;;
    *) echo "unknown node '$1' (head, w1, w2, ...)" >&2; exit 2 ;;
  esac
}

# settings every node starts with: fast detection of a dead node (3 missed 1 s health checks
# instead of 5 missed 3 s ones), no usage statistics, no hub
ray_env=(env RAY_health_check_period_ms=1000 RAY_health_check_failure_threshold=3
         RAY_health_check_timeout_ms=1000 RAY_USAGE_STATS_ENABLED=0
         HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error)
ray_common=(--num-cpus=1 --num-gpus=0 --object-store-memory=200000000 --disable-usage-stats)

start() {
  local workers="${1:-1}" i ns ip
  if [ -n "$(namespaces)" ]; then
    echo "ray netns: namespaces of '$prefix' exist already; stopping them first" >&2
    stop
  fi
  command -v "$ray_bin" >/dev/null || { echo "ray netns: '$ray_bin' not found (activate the venv or set RAY)" >&2; exit 1; }
  # a start that fails half-way leaves nothing behind
  trap 'status=$?; if [ "$status" -ne 0 ]; then stop; fi; exit "$status"' EXIT
  mkdir -p "$tmp_root"

  ip netns add "$head_ns"
  ip -n "$head_ns" link set lo up
  ip -n "$head_ns" link add br0 type bridge
  ip -n "$head_ns" addr add "$head_ip/24" dev br0
  ip -n "$head_ns" link set br0 up
  for i in $(seq 1 "$workers"); do
    ns="${prefix}-w$i"
    ip="10.200.0.$((i + 1))"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # a veth pair made directly between the two namespaces: neither end ever exists here
    ip -n "$head_ns" link add "vw$i" type veth peer name eth0 netns "$ns"
    ip -n "$head_ns" link set "vw$i" master br0
    ip -n "$head_ns" link set "vw$i" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
  done

  ip netns exec "$head_ns" "${ray_env[@]}" "$ray_bin" start --head --node-ip-address="$head_ip" --port="$port" \
    --include-dashboard=false --temp-dir="$tmp_root/head" "${ray_common[@]}" >"$tmp_root/head.log" 2>&1 \
    || { cat "$tmp_root/head.log" >&2; exit 1; }
  for i in $(seq 1 "$workers"); do
    ns="${prefix}-w$i"
    ip="10.200.0.$((i + 1))"
    ip netns exec "$ns" "${ray_env[@]}" "$ray_bin" start --address="$head_ip:$port" --node-ip-address="$ip" \
      --temp-dir="$tmp_root/w$i" "${ray_common[@]}" >"$tmp_root/w$i.log" 2>&1 \
      || { cat "$tmp_root/w$i.log" >&2; exit 1; }
  done

  # wait until the head counts every node as alive
  local want=$((workers + 1)) alive=0
  for _ in $(seq 120); do
    alive="$(ip netns exec "$head_ns" "$ray_bin" status --address="$head_ip:$port" 2>/dev/null \
               | awk '/^Active:/{on=1; next} /^Pending:/{on=0} on && /node_/{n++} END{print n+0}')"
    if [ "$alive" -ge "$want" ]; then
      echo "ray netns: $want nodes alive; head at $head_ip:$port in namespace $head_ns"
      trap - EXIT
      return 0
    fi
    sleep 0.5
  done
  echo "ray netns: only $alive of $want nodes came up; logs in $tmp_root" >&2
  tail -n 20 "$tmp_root"/*.log >&2 || true
  exit 1
}

case "${1:-}" in
  start) start "${2:-1}" ;;
  stop) stop ;;
  exec) ns="$(node_ns "${2:?node}")"; shift 2; exec ip netns exec "$ns" "$@" ;;
  pids) ip netns pids "$(node_ns "${2:?node}")" ;;
  status)
    namespaces
    if ip netns list | grep -q "^$head_ns"; then
      ip netns exec "$head_ns" "$ray_bin" status --address="$head_ip:$port" || true
    fi ;;
  *) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
