#!/usr/bin/env bash
# Alternates BenchMARL's anchor run and ours, one run each per round, so that drift of the machine's speed
# hits both alike. Usage (from the repo root, on an idle machine): bash benchmarks/compare_benchmarl.sh [ROUNDS=3]
set -euo pipefail
ROUNDS=${1:-3}
ANCHOR=${ANCHOR:-../shared/bench/benchmarl_anchor.sh}
ours=(); theirs=()
for i in $(seq 1 "$ROUNDS"); do
  b=$(bash "$ANCHOR" 60000 1 | grep -o 'median wall_s=[0-9.]*' | cut -d= -f2)
  m=$(python benchmarks/speed_mappo.py --runs 1 | grep -o 'median wall_s=[0-9.]*' | cut -d= -f2)
  echo "round $i: benchmarl wall_s=$b marl_lightning wall_s=$m"
  theirs+=("$b"); ours+=("$m")
done
python3 - "${theirs[*]}" "${ours[*]}" <<'PY'
import statistics, sys
b = [float(x) for x in sys.argv[1].split()]; m = [float(x) for x in sys.argv[2].split()]
mb, mm = statistics.median(b), statistics.median(m)
print(f"median wall_s: benchmarl={mb:.2f} ({60000/mb:.0f} frames/s) marl_lightning={mm:.2f} ({60000/mm:.0f} frames/s)")
print(f"marl_lightning is {mb/mm:.2f}x BenchMARL's throughput")
PY
