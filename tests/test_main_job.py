"""The README's main job, shortened: the real script under `accelerate launch`, real files out.

Once on one process, then under the README's scale-out configs (DDP, ZeRO-2, ZeRO-3 with 2
processes). The scale-out launches guard against the deadlock where the main process trained the
PRM alone while a DeepSpeed model load inside it (a ZeRO-3 partitioned build, a ZeRO-2
``deepspeed.initialize``) waited for the other rank: every launch must run to the end in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rewardkit.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs" / "accelerate"
NAMES = ("math.accuracy", "format.boxed", "prm.score")


def _run_main_job(tmp_path: Path, launch_config: str, max_steps: int, per_device: int, timeout: int) -> Path:
    cfg = yaml.safe_load((ROOT / "examples/configs/grpo_compose.yaml").read_text())
    cfg.update(output_dir=str(tmp_path / "run"), n_train=32, warmstart_steps=2, warmstart_batch_size=8,
               prm_train_epochs=1, max_steps=max_steps, logging_steps=1, per_device_train_batch_size=per_device,
               num_generations=4, disable_tqdm=True)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / launch_config),
           "--main_process_port", str(free_port()), str(ROOT / "examples/grpo_compose.py"), "--config", str(config)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise AssertionError(f"{launch_config}: the main job did not finish in {timeout}s (deadlock?)\n"
                             f"{out[-3000:]}") from None
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the tiny PRM is trained and evaluated once, by the main process
    assert proc.stdout.count("process reward: tiny PRM trained 1 epochs") == 1, proc.stdout[-3000:]
    return tmp_path / "run"


def _check_outputs(run: Path, steps: int) -> None:
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == steps
    for name in NAMES:
        assert f"rewards/{name}/mean" in history[0]
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["per_reward_end"]) == set(NAMES)
    assert (run / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_job_runs_and_writes_metrics_and_plot(tmp_path):
    run = _run_main_job(tmp_path, "single_cpu.yaml", max_steps=2, per_device=8, timeout=600)
    _check_outputs(run, steps=2)


@pytest.mark.distributed
@pytest.mark.parametrize("launch_config", ["ddp_cpu.yaml", "zero2_cpu.yaml", "zero3_cpu.yaml"])
def test_main_job_finishes_on_two_processes(tmp_path, launch_config):
    # one GRPO step on 2 ranks x 4 rows; the PRM is trained on the main process only
    run = _run_main_job(tmp_path, launch_config, max_steps=1, per_device=4, timeout=480)
    _check_outputs(run, steps=1)
