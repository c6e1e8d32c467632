"""``benchmarks/gpu_check.sh`` keeps to its time budget: a part that would start with under 20 s of
``GPU_CHECK_BUDGET`` left is skipped and says so, and the script still ends well (a device call is cut off
at 600 s, and what a part printed before is kept). Each part's commands are checked by the CPU smoke run,
``GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh`` (about 6 minutes on 2 cores: not in the suite)."""

from __future__ import annotations

import os
import re
import subprocess

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_every_part_is_skipped_once_the_budget_is_spent(tmp_path):
    env = {**os.environ, "GPU_CHECK_CPU": "1", "GPU_CHECK_BUDGET": "0", "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    parts = re.findall(r"^=== (.+?) \[CPU smoke", out, flags=re.M)
    assert parts[0] == "versions" and len(parts) == 8, parts
    assert re.search(r"^python \S+ torch \S+ .* torchrl \S+ vmas \S+ gpu cpu$", out, flags=re.M)
    # the CUDA tests, the 3 MAPPO runs, every algorithm, the two ranks: skipped for the budget
    assert len(re.findall(r"^skipped: -?\d+ s of the 0 s budget left$", out, flags=re.M)) == 6, out
    assert "skipped: 0 GPU(s) here; NCCL's all-reduce needs two" in out
    assert not list(tmp_path.iterdir())  # no part ran
