#!/usr/bin/env bash
# Everything the GPU path needs checked, in one call on a GPU machine (under 8 minutes on an H100/H200):
# the CUDA tests, MAPPO on navigation at 4,096 and 16,384 envs (end-to-end and steady-state frames/s, the
# collect/update split, GPU memory, collection against VMAS alone), the same at 4,096 with the networks
# compiled, every algorithm at 4,096 envs, and two ranks on the one GPU. Prints the figures; with $OUT set, also writes each part's log there.
#
# The machine may have no network: prepare the wheels it lacks here first, `bash benchmarks/gpu_wheels.sh`
# (writes .whl/, which this script installs when it finds it).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
part() { echo; echo "=== $1 ($(date +%T))"; }

part versions
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "
import sys, torch, lightning, tensordict, torchrl, vmas
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'lightning', lightning.__version__, 'tensordict', tensordict.__version__, 'torchrl', torchrl.__version__,
      'vmas', vmas.__version__, 'gpu', torch.cuda.get_device_name(0))"

part "CUDA tests"
timeout 200 python3 -m pytest -q -n 0 -s -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt" \
  | grep -E "host syncs|passed|failed|error|Error" | tail -20

part "MAPPO, navigation, 4,096 envs (5 iterations of 409,600 frames)"
timeout 150 python3 benchmarks/throughput.py --frames 2048000 -- --config conf/gpu/envs_4096.yaml 2>&1 \
  | tee "$OUT/mappo_4096.txt" | grep -v -i warn | tail -9

part "MAPPO, navigation, 4,096 envs, networks compiled (model.compile_networks default; against the run above)"
timeout 150 python3 benchmarks/throughput.py --frames 2048000 -- --config conf/gpu/envs_4096.yaml \
  --model.compile_networks default 2>&1 | tee "$OUT/mappo_4096_compiled.txt" | grep -v -i warn | tail -9

part "MAPPO, navigation, 16,384 envs (3 iterations of 1,638,400 frames)"
timeout 150 python3 benchmarks/throughput.py --frames 4915200 -- --config conf/gpu/envs_16384.yaml 2>&1 \
  | tee "$OUT/mappo_16384.txt" | grep -v -i warn | tail -9

part "every algorithm, navigation, 4,096 envs (3 iterations each)"
timeout 200 python3 benchmarks/algorithm_speeds.py --iterations 3 --tasks navigation \
  --scale-config conf/gpu/envs_4096.yaml 2>&1 | tee "$OUT/algorithms_4096.txt" | grep "^|"

part "two ranks on the one GPU (torchrun, 2 'nodes' of 1 process, NCCL; 4 iterations of 409,600 frames each)"
rm -rf /tmp/two_ranks && mkdir -p /tmp/two_ranks/n0 /tmp/two_ranks/n1
times='[{"class_path": "callbacks.IterationTimes", "init_args": {"path": "/tmp/two_ranks/times.jsonl"}}]'
for rank in 0 1; do
  (cd /tmp/two_ranks/n$rank && timeout 150 python3 -m torch.distributed.run --nnodes 2 --nproc_per_node 1 \
    --node_rank $rank --master_addr 127.0.0.1 --master_port 29561 -m marl_lightning fit \
    --config "$ROOT/conf/mappo.yaml" --config "$ROOT/conf/gpu/envs_4096.yaml" --trainer.num_nodes 2 \
    --trainer.strategy ddp --trainer.logger false --trainer.callbacks "$times" --trainer.limit_val_batches 0 \
    --model.total_frames 3276800 --trainer.enable_progress_bar false > ../rank$rank.txt 2>&1
   echo "rank $rank exit $?" >> ../rank$rank.txt) &
done
wait
cat /tmp/two_ranks/rank*.txt > "$OUT/two_ranks.txt"
grep -h -E "exit|Error|error" /tmp/two_ranks/rank*.txt | grep -v -i warn | tail -6
[ -f /tmp/two_ranks/times.jsonl ] && python3 -c "
import json, statistics
lines = [json.loads(l) for l in open('/tmp/two_ranks/times.jsonl')][1:]
s = statistics.median(l['wall_s'] for l in lines)
print(f'two ranks: steady iteration {s:.3f} s for 819,200 frames (2 x 409,600): {819200 / s:,.0f} frames/s')"
echo "logs in $OUT"
