#!/usr/bin/env bash
# Interleaved A/B of two docket binaries: for each round and each workload, `docket bench`
# with A then B (B then A on even rounds), each on a fresh 3-node cluster it starts itself.
# Prints one JSON line per run, then per workload the median (min-max) of each arm and B/A.
#   usage: ops/bench/ab.sh A_BINARY B_BINARY [ROUNDS=2] [DUR_S=8] [CLIENTS="64 16 1"] > ab.txt
#   env:   BATCH (default 1), MODE (default write), EXTRA (more `docket bench` flags, both
#          arms), EXTRA_A / EXTRA_B (flags for one arm: A/B of a flag on one binary), FIRST
#          (the first round's number: rounds alternate which arm goes first by its parity)
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-2} DUR=${4:-8} CLIENTS=${5:-"64 16 1"}
BATCH=${BATCH:-1} MODE=${MODE:-write} EXTRA=${EXTRA:-} FIRST=${FIRST:-1}
LINES=$(mktemp)
trap 'rm -f "$LINES"' EXIT
for round in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
  for n in $CLIENTS; do
    arms="A B"; ((round % 2 == 0)) && arms="B A"
    for arm in $arms; do
      bin=$A arm_extra=${EXTRA_A:-}
      [[ $arm == B ]] && bin=$B arm_extra=${EXTRA_B:-}
      # shellcheck disable=SC2086
      out=$("$bin" bench --nodes 3 --clients "$n" --batch "$BATCH" --mode "$MODE" \
        --duration-s "$DUR" --output json $EXTRA $arm_extra 2>/dev/null)
      jq -c --arg arm "$arm" --argjson round "$round" \
        '{arm: $arm, round: $round, clients, ops: .operations_per_s, p50: .latency_ms_p50,
          p99: .latency_ms_p99, errors}' <<<"$out" | tee -a "$LINES"
    done
  done
done
jq -rs '
  def med: sort | if length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r(n): (. * n | round) / n;
  def span(f; n): [.[] | f] | "\(med | r(n)) (\(min | r(n))-\(max | r(n)))";
  group_by(.clients) | reverse | map(
    ([.[] | select(.arm == "A")]) as $a | ([.[] | select(.arm == "B")]) as $b
    | "clients \(.[0].clients): ops/s A \($a | span(.ops; 1)) B \($b | span(.ops; 1)) "
      + "B/A \(($b | map(.ops) | med) / ($a | map(.ops) | med) | r(1000)); "
      + "p50 A \($a | span(.p50; 100)) B \($b | span(.p50; 100)); "
      + "p99 A \($a | span(.p99; 100)) B \($b | span(.p99; 100))") | .[]' "$LINES"
