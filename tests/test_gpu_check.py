"""bench/gpu_check.sh is ready to run where a GPU is at hand: its CPU mode runs every step of it at
tiny sizes and must produce the same JSON shape, with no step failing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_script_runs_every_step_in_cpu_mode(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "GPU_CHECK_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "bench/gpu_check.sh"), str(out)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for step in ("grpo", "prm", "zero3_main_job"):
        assert "error" not in result[step], result[step]
        assert result[step]["wall_s"] >= 0
    assert result["grpo"]["ratio_composed_over_bare"] > 0
    assert result["grpo"]["composed"]["median_step_s"] > 0
    assert result["prm"]["max_abs_score_diff"] < 1e-4 and result["prm"]["ratio_tagged_over_prefix"] > 1
    assert set(result["zero3_main_job"]["per_reward_end"]) == {"math.accuracy", "format.boxed", "prm.score"}
    assert result["versions"]["trl"]
