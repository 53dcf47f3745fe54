"""examples/rewardmap_grpo.py, shortened: the real script under `accelerate launch`, real files out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from rewardkit.testing import free_port

ROOT = Path(__file__).resolve().parents[3]


def test_example_runs_the_curriculum_and_writes_the_report(tmp_path):
    cfg = yaml.safe_load((ROOT / "examples/configs/rewardmap_grpo.yaml").read_text())
    cfg.update(output_dir=str(tmp_path / "run"), n_maps=2, questions_per_map=6, warmstart_steps=2,
               warmstart_batch_size=4, max_steps=3, per_device_train_batch_size=4, num_generations=2,
               max_completion_length=8)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "examples/configs/accelerate/single_cpu.yaml"), "--main_process_port", str(free_port()),
           str(ROOT / "examples/rewardmap_grpo.py"), "--config", str(config), "--threshold", "0.0"]  # a flag wins
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 3 and all("curriculum/gate_stage" in h for h in history)   # gated by the flag
    assert [h["curriculum/stage"] for h in history] == sorted(h["curriculum/stage"] for h in history)
    stages = json.loads((run / "stages.json").read_text())
    assert stages["advances"] and stages["stages"][0]["types"] == "TorF1+TorF2"
    assert sum(stages["stage_sizes"].values()) == 12 and "rewards/rewardmap.reward/mean" in history[0]
    assert (run / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_example_vlm_flag_trains_the_tiny_vlm_on_rendered_maps(tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "examples/configs/accelerate/single_cpu.yaml"), "--main_process_port", str(free_port()),
           str(ROOT / "examples/rewardmap_grpo.py"), "--config", str(ROOT / "examples/configs/rewardmap_grpo.yaml"),
           "--vlm", "--max_steps", "2", "--n_maps", "2", "--questions_per_map", "4", "--max_completion_length", "8",
           "--output_dir", str(tmp_path / "run")]   # a bare --vlm: the offline tiny Qwen2.5-VL
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = [line for line in proc.stdout.splitlines() if line.startswith("vision tower: ")]
    assert calls and int(calls[0].split()[2]) > 0           # the maps went through the vision tower
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(h["curriculum/stage"] == 0.0 for h in history)
