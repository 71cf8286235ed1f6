#!/usr/bin/env bash
# Where a growing ledger's CPU goes: runs `docket bench --mode grow` and, when the ledger
# reaches each length in AT, sums the CPU time (user + system, from /proc) of every thread
# of the three nodes over WINDOW_S seconds, by thread name (tokio-rt-worker,
# docket-map-fold, fjall:worker, ...), per 1,000 ledger entries appended meanwhile, with
# the time those threads waited in the run queue (/proc/<pid>/task/<tid>/schedstat).
# On a machine the nodes saturate, throughput is the inverse of the TOTAL line.
#   usage: ops/bench/grow-cpu.sh DOCKET_BINARY [more `docket bench` flags] > cpu.txt
#   env:   AT (ledger lengths, default "150000 760000"; keep each inside a round, away
#          from the pause between rounds), WINDOW_S (default 10), ROUNDS (default 3),
#          DURATION_S (each round, default 60), RATE_HINT (default 10000), BENCH_LOG (keep
#          the benchmark's own output there as it runs, for long fills; default: a
#          temporary file, printed at the end either way)
#   e.g.   AT="600000 5000000 9000000" ROUNDS=40 DURATION_S=240 BENCH_LOG=fill.log \
#            ops/bench/grow-cpu.sh target/release/docket --until-entries 10000000
set -euo pipefail
BIN=$1; shift
AT=${AT:-"150000 760000"} WINDOW_S=${WINDOW_S:-10} ROUNDS=${ROUNDS:-3}
DURATION_S=${DURATION_S:-60} RATE_HINT=${RATE_HINT:-10000}
LOG=${BENCH_LOG:-$(mktemp)}
SAMPLE=$(mktemp)
trap 'rm -f "$SAMPLE".0 "$SAMPLE".1 "$SAMPLE"; [ -n "${BENCH_LOG:-}" ] || rm -f "$LOG"' EXIT
"$BIN" bench --mode grow --rounds "$ROUNDS" --duration-s "$DURATION_S" --clients 16 \
  --batch 100 --rate-hint "$RATE_HINT" "$@" > "$LOG" 2>&1 &
bench=$!
until [ "$(pgrep -f "$BIN serve" | wc -l)" -ge 3 ]; do sleep 0.2; done
sleep 2
pids=$(pgrep -f "$BIN serve" | tr '\n' ' ')
addr=$(pgrep -af "$BIN serve" | grep -o -- "--api-addr [0-9.:]*" | head -1 | cut -d' ' -f2)
entries() {
  curl -s --max-time 1 "http://$addr/metrics" | awk '/^docket_ledger_entries/ {print $2}'
}
# pid, thread name, utime + stime (clock ticks), run-queue wait (ns), one line per thread
threads() {
  for p in $pids; do
    for t in /proc/"$p"/task/*; do
      name=$(tr ' ' '_' < "$t"/comm 2>/dev/null) || continue
      ticks=$(awk '{print $14 + $15}' "$t"/stat 2>/dev/null) || continue
      wait=$(cut -d' ' -f2 "$t"/schedstat 2>/dev/null) || continue
      echo "$p $name $ticks $wait"
    done
  done
}
hz=$(getconf CLK_TCK)
for at in $AT; do
  while e=$(entries) && [ -n "$e" ] && [ "$e" -lt "$at" ]; do sleep 0.5; done
  [ -n "${e:-}" ] || { echo "the cluster stopped before $at entries" >&2; break; }
  e0=$(entries); threads > "$SAMPLE".0; sleep "$WINDOW_S"; e1=$(entries); threads > "$SAMPLE".1
  echo "== ledger $e0 .. $e1 ($(( (e1 - e0) / WINDOW_S )) entries/s)"
  awk -v n=$((e1 - e0)) -v hz="$hz" '
    NR == FNR { k = $1 " " $2; t0[k] += $3; q0[k] += $4; next }
    { k = $1 " " $2; t1[k] += $3; q1[k] += $4 }
    END {
      for (k in t1) {
        split(k, a, " "); name = a[2]; sub(/[-:]?[0-9]+$/, "", name)
        cpu[name] += (t1[k] - t0[k]) / hz; rq[name] += (q1[k] - q0[k]) / 1e9
        total += (t1[k] - t0[k]) / hz
      }
      for (c in cpu) if (cpu[c] > 0.05)
        printf "%-20s cpu %6.2f s  %7.1f ms per 1,000 entries  run-queue wait %6.2f s\n",
          c, cpu[c], cpu[c] * 1e6 / n, rq[c]
      printf "%-20s cpu %6.2f s  %7.1f ms per 1,000 entries\n", "TOTAL", total, total * 1e6 / n
    }' "$SAMPLE".0 "$SAMPLE".1 | sort -k5 -nr
done
wait "$bench"
grep -v '^  ' "$LOG"
