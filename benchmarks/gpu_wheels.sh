#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh installs on a GPU machine that has no network: that machine's image has
# Python 3.12, torch, lightning, numpy, pandas, matplotlib, pytest, but none of TorchRL, TensorDict, VMAS or
# jsonargparse. Run here (PyPI reachable); writes .whl/ (git-ignored), carried to the machine with the tree.
# The fit there logs through IterationTimes with --trainer.logger false: MLflow (whose wheels and their
# dependencies exceed what can be carried) is not needed for the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  torchrl==0.14.1 tensordict==0.14.3 hoptorch==0.1.4 pyvers==0.2.3 orjson==3.13.0 importlib_metadata==9.1.0 \
  pyglet==1.5.27 gym-notices==0.0.8 \
  jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0
# VMAS 1.5.2 and gym 0.26.2 (which VMAS imports) are published as source archives only: pure-Python wheels
# built here.
python3 -m pip wheel -q --no-deps -w .whl vmas==1.5.2 gym==0.26.2
ls -la .whl
du -sh .whl
