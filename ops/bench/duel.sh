#!/usr/bin/env bash
# docket against etcd on this machine: fresh 3-node loopback clusters (fsync on), each
# workload run by both systems back to back, REPS rounds interleaved, then a table of
# medians (min-max) and docket/etcd ratios (ops/bench/duel-summary.sh).
#
# etcd is driven by kvbench, a closed-loop gRPC load generator kept outside this
# repository (its binary, and its scripts/etcd3.sh to start and stop etcd); docket by its
# own `docket bench`. Workloads (mode:clients:batch): writes at 1, 16 and 64 clients,
# docket batches of 100 from 16 clients (no etcd equivalent), linearizable reads at 64
# clients. etcd: 256-byte puts to fresh keys, gets at the leader. docket: pre-signed
# proposals over HTTP/JSON, each one signature checked on every replica.
#
# Where clients connect: kvbench sends every request to etcd's leader. `docket bench`
# spreads its clients over all nodes unless told `--to leader` (followers then forward
# each write to the leader: one more HTTP hop). DOCKET_BENCH_ARGS (default `--to leader`,
# like kvbench) says which; set it to `--to all` for the spread.
#
#   prerequisites: apt-get install -y etcd-server etcd-client protobuf-compiler jq
#                  (cd $KVBENCH && cargo build --release)   # or set KV to a kvbench binary
#   usage: ops/bench/duel.sh [REPS=3] [DUR_S=5] > duel.jsonl; ops/bench/duel-summary.sh duel.jsonl
#   env:   DOCKET   the docket binary (default target/release/docket)
#          KVBENCH  kvbench's folder (default: ../shared/tools/kvbench beside the checkout)
#          KV       the kvbench binary (default $KVBENCH/target/release/kvbench)
#          CONFIGS  workloads (default "write:1:1 write:16:1 write:64:1 write:16:100 read:64:1")
#          DOCKET_BENCH_ARGS  more `docket bench` flags (default "--to leader")
#
# Run it on an otherwise idle machine (both systems share its cores with their load
# generators); on a shared one, hold its benchmark lock, e.g. `flock -x /work/cpu.lock`.
set -euo pipefail
REPS=${1:-3} DUR=${2:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -z ${KVBENCH:-} ]]; then
  for candidate in "$ROOT/../shared/tools/kvbench" "$ROOT/../../shared/tools/kvbench"; do
    [[ -d $candidate ]] && KVBENCH=$(cd "$candidate" && pwd) && break
  done
fi
KVBENCH=${KVBENCH:?set KVBENCH to kvbench\'s folder}
KV=${KV:-$KVBENCH/target/release/kvbench}
DOCKET=${DOCKET:-$ROOT/target/release/docket}
DOCKET_BENCH_ARGS=${DOCKET_BENCH_ARGS:---to leader}
CONFIGS=${CONFIGS:-"write:1:1 write:16:1 write:64:1 write:16:100 read:64:1"}
ETCD=$KVBENCH/scripts/etcd3.sh
ENDPOINTS=http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379
ETCD_DIR=$(mktemp -d -t docket-duel-etcd.XXXXXX)
trap 'DIR=$ETCD_DIR/run "$ETCD" stop >/dev/null 2>&1 || true; rm -rf "$ETCD_DIR"' EXIT

[[ -x $DOCKET ]] || { echo "no docket binary at $DOCKET (cargo build --release)" >&2; exit 2; }
[[ -x $KV ]] || { echo "no kvbench binary at $KV (build it in $KVBENCH, or set KV)" >&2; exit 2; }
[[ -x $ETCD ]] || { echo "no $ETCD (set KVBENCH)" >&2; exit 2; }
for tool in etcd etcdctl jq; do
  command -v $tool >/dev/null || { echo "missing $tool (see prerequisites)" >&2; exit 2; }
done

for rep in $(seq "$REPS"); do
  for cfg in $CONFIGS; do
    IFS=: read -r mode n batch <<<"$cfg"
    if ((batch == 1)); then
      DIR=$ETCD_DIR/run "$ETCD" start >/dev/null 2>&1
      wl=put; [[ $mode == read ]] && wl=get
      out=$("$KV" etcd --endpoints $ENDPOINTS --workload $wl --clients "$n" --duration "$DUR" \
        --server-pids "$(cat "$ETCD_DIR"/run/n*.pid | paste -sd,)")
      DIR=$ETCD_DIR/run "$ETCD" stop >/dev/null 2>&1 || true
      jq -c --argjson rep "$rep" --arg cfg "$cfg" '{sys: "etcd", cfg: $cfg, rep: $rep,
        ops_s: .ops_per_s, p50: .lat_ms.p50, p99: .lat_ms.p99, cpu: .cpu}' <<<"$out"
    fi
    # shellcheck disable=SC2086
    out=$("$DOCKET" bench --nodes 3 --clients "$n" --batch "$batch" --mode "$mode" \
      --duration-s "$DUR" --output json $DOCKET_BENCH_ARGS 2>/dev/null)
    jq -c --argjson rep "$rep" --arg cfg "$cfg" --arg args "$DOCKET_BENCH_ARGS" \
      '{sys: "docket", cfg: $cfg, rep: $rep, args: $args} + .' <<<"$out"
  done
done
