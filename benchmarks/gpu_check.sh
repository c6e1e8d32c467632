#!/usr/bin/env bash
# Everything the GPU path needs checked, in one call on a GPU machine: the CUDA tests, MAPPO on navigation at
# 4,096 and 16,384 envs (end-to-end and steady-state frames/s, the collect/update split, GPU memory,
# collection against VMAS alone), every algorithm at 4,096 envs, two ranks on the one GPU (NCCL, else gloo
# on the GPU), MAPPO at 4,096 with the networks compiled, and the gradient all-reduce on NCCL where there are
# two GPUs. Prints the figures; with $OUT set, also writes each part's log there.
#
# The parts run in that order, most needed first, each under its own time limit and all within
# GPU_CHECK_BUDGET seconds (510 unless set: a device call may run 600): a part that would start with less
# than 20 s left is skipped, and says so.
#
# The machine may have no network: prepare the wheels it lacks here first, `bash benchmarks/gpu_wheels.sh`
# (writes .whl/, which this script installs when it finds it and the machine has no TorchRL).
#
# GPU_CHECK_CPU=1 runs every part on the CPU at a tiny scale (benchmarks/gpu_check_cpu.yaml instead of
# conf/gpu/*.yaml; gloo for the two ranks): a check of the script itself where there is no GPU, e.g. in a
# venv that copies the GPU machine's. Its figures mean nothing. (tests/test_gpu_check.py: the budget.)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import torchrl" 2>/dev/null; then  # (the wheels: for a machine without them)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
part() { echo; echo "=== $1${SMOKE:+ [CPU smoke: figures mean nothing]} ($(date +%T))"; }
BUDGET=${GPU_CHECK_BUDGET:-510}
# limit N: N seconds, or what is left of the budget if less; fails (the part is skipped) under 20 s left
limit() {
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 20 ]; then echo "skipped: ${left} s of the ${BUDGET} s budget left" >&2; return 1; fi
  echo $(($1 < left ? $1 : left))
}
# throughput NAME SECONDS ARGS...: benchmarks/throughput.py ARGS, its log in $OUT/NAME.txt, its figures printed
throughput() {
  local name=$1 seconds=$2
  shift 2
  timeout "$seconds" python3 benchmarks/throughput.py "$@" 2>&1 | tee "$OUT/$name.txt" \
    | grep -v -i -E "warn|tip:|available:" | tail -9
}
# the scale files, and an iteration's frames at each scale
if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
  SMOKE=1 SCALE_4096=benchmarks/gpu_check_cpu.yaml SCALE_16384=benchmarks/gpu_check_cpu.yaml
  FRAMES=1600 FRAMES_16384=1600 SMI=: GPU_NAME="'cpu'" GPUS=0
else
  SMOKE='' SCALE_4096=conf/gpu/envs_4096.yaml SCALE_16384=conf/gpu/envs_16384.yaml
  FRAMES=409600 FRAMES_16384=1638400 SMI=nvidia-smi GPU_NAME="torch.cuda.get_device_name(0)"
  GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
fi

part versions
$SMI --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "
import sys, torch, lightning, tensordict, torchrl, vmas
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'lightning', lightning.__version__, 'tensordict', tensordict.__version__, 'torchrl', torchrl.__version__,
      'vmas', vmas.__version__, 'gpu', $GPU_NAME)"

part "CUDA tests"
if t=$(limit 150); then
  timeout "$t" python3 -m pytest -q -n 0 -s -p no:cacheprovider tests/test_cuda.py 2>&1 \
    | tee "$OUT/cuda_tests.txt" | grep -E "host syncs|passed|failed|skipped|error|Error" | tail -20
fi

part "MAPPO, navigation, 4,096 envs (5 iterations of 409,600 frames)"
if t=$(limit 120); then
  throughput mappo_4096 "$t" --frames $((5 * FRAMES)) -- --config $SCALE_4096
fi

part "MAPPO, navigation, 16,384 envs (3 iterations of 1,638,400 frames)"
if t=$(limit 120); then
  throughput mappo_16384 "$t" --frames $((3 * FRAMES_16384)) -- --config $SCALE_16384
fi

part "every algorithm, navigation, 4,096 envs (3 iterations each)"
if t=$(limit 180); then
  timeout "$t" python3 benchmarks/algorithm_speeds.py --iterations 3 --tasks navigation \
    --scale-config $SCALE_4096 2>&1 | tee "$OUT/algorithms_4096.txt" | grep "^|"
fi

# two_ranks ddp|gloo SECONDS: torchrun, 2 'nodes' of 1 process each (both on GPU 0), 4 iterations a rank;
# ddp: Lightning's default backend (NCCL on a GPU), gloo: gloo on the GPU
two_ranks() {
  local folder=/tmp/two_ranks_$1 strategy=ddp
  [ "$1" = gloo ] && strategy='{"class_path": "marl_lightning.launch.distributed.RolloutDDPStrategy",
    "init_args": {"process_group_backend": "gloo"}}'
  local times="[{\"class_path\": \"callbacks.IterationTimes\", \"init_args\": {\"path\": \"$folder/times.jsonl\"}}]"
  rm -rf "$folder" && mkdir -p "$folder/n0" "$folder/n1"
  for rank in 0 1; do
    (cd "$folder/n$rank" && timeout "$2" python3 -m torch.distributed.run --nnodes 2 --nproc_per_node 1 \
      --node_rank $rank --master_addr 127.0.0.1 --master_port 29561 -m marl_lightning fit \
      --config "$ROOT/conf/mappo.yaml" --config "$ROOT/$SCALE_4096" --trainer.num_nodes 2 \
      --trainer.strategy "$strategy" --trainer.logger false --trainer.callbacks "$times" \
      --trainer.limit_val_batches 0 --model.total_frames $((8 * FRAMES)) --trainer.enable_progress_bar false \
      > ../rank$rank.txt 2>&1
     echo "rank $rank exit $?" >> ../rank$rank.txt) &
  done
  wait
  cat "$folder"/rank*.txt > "$OUT/two_ranks_$1.txt"
  grep -h -E "exit|Error|error" "$folder"/rank*.txt | grep -v -i warn | tail -6
  [ -f "$folder/times.jsonl" ] && python3 -c "
import json, statistics
lines = [json.loads(l) for l in open('$folder/times.jsonl')][1:]
s = statistics.median(l['wall_s'] for l in lines)
print(f'two ranks ($1): steady iteration {s:.3f} s for {2 * $FRAMES:,} frames (2 x {$FRAMES:,}): '
      f'{2 * $FRAMES / s:,.0f} frames/s')"
}
part "two ranks on the one GPU (torchrun, 2 'nodes' of 1 process; NCCL, else gloo; 4 iterations of 409,600 frames a rank)"
if t=$(limit 120); then
  two_ranks ddp "$t" | tee /tmp/two_ranks_ddp.out
  # (the CPU smoke runs both, to check both commands)
  if { [ -n "$SMOKE" ] || ! grep -q "frames/s" /tmp/two_ranks_ddp.out; } && t=$(limit 120); then
    echo "${SMOKE:+(CPU smoke: both backends run) }NCCL did not run two ranks on one GPU (above); gloo on the GPU:"
    two_ranks gloo "$t"
  fi
fi

part "MAPPO, navigation, 4,096 envs, networks compiled (model.compile_networks default; against the eager run)"
if t=$(limit 150); then
  throughput mappo_4096_compiled "$t" --frames $((5 * FRAMES)) -- --config $SCALE_4096 \
    --model.compile_networks default
fi

part "the gradient all-reduce on NCCL, 2 GPUs (flat buffer, per tensor, overlapped)"
if [ "$GPUS" -ge 2 ]; then
  if t=$(limit 60); then
    timeout "$t" python3 benchmarks/allreduce_cost.py --backend nccl 2>&1 | tee "$OUT/allreduce_nccl.txt" \
      | grep -v -i warn | tail -5
  fi
else
  echo "skipped: $GPUS GPU(s) here; NCCL's all-reduce needs two"
fi
echo "logs in $OUT; $SECONDS s in all"
