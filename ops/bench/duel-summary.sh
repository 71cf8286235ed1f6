#!/usr/bin/env bash
# Summarizes duel.sh's JSON lines (etcd via kvbench, docket via `docket bench`) as a
# markdown table: per workload and system, the median and min-max of throughput, p50 and
# p99 over the rounds, and docket/etcd of the medians; workloads in the order they ran.
#   usage: ops/bench/duel-summary.sh duel.jsonl
set -euo pipefail
jq -rs '
  def med: sort | if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r(n): if . == null then "-" else (. * n | round) / n | tostring end;
  def span(f; n): [.[] | f] | "\(med | r(n)) (\(min | r(n))-\(max | r(n)))";
  map({sys, cfg,
       ops: (.ops_s // .operations_per_s),
       p50: (.p50 // .latency_ms_p50),
       p99: (.p99 // .latency_ms_p99)})
  | . as $all
  # Workloads in the order the duel ran them (first appearance), not sorted by name.
  | (reduce ($all[] | .cfg) as $c ([]; if index([$c]) then . else . + [$c] end))
  | map(. as $c | [$all[] | select(.cfg == $c)]) | map(
      . as $runs | ($runs[0].cfg) as $cfg
      | ([$runs[] | select(.sys == "etcd")]) as $e
      | ([$runs[] | select(.sys == "docket")]) as $d
      | ($e | map(.ops) | med) as $eo | ($d | map(.ops) | med) as $do
      | "| \($cfg) | \(if ($e|length) > 0 then ($e | span(.ops; 1)) else "-" end) | \($d | span(.ops; 1)) | "
        + "\(if $eo then ($do / $eo | r(100)) else "-" end) | "
        + "\(if ($e|length) > 0 then ($e | span(.p50; 100)) else "-" end) / \($d | span(.p50; 100)) | "
        + "\(if ($e|length) > 0 then ($e | span(.p99; 100)) else "-" end) / \($d | span(.p99; 100)) | \($d | length) |")
  | ["| workload (mode:clients:batch) | etcd ops/s | docket ops/s | docket/etcd | p50 ms etcd / docket | p99 ms etcd / docket | rounds |",
     "|---|---|---|---|---|---|---|"] + . | .[]' "$1"
