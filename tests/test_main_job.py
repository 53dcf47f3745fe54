"""The README's main job, shortened: the real script under `accelerate launch`, real files out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_main_job_runs_and_writes_metrics_and_plot(tmp_path):
    cfg = yaml.safe_load((ROOT / "examples/configs/grpo_compose.yaml").read_text())
    cfg["output_dir"] = str(tmp_path / "run")
    cfg["warmstart"]["steps"] = 3
    cfg["process_reward"]["train_epochs"] = 1
    cfg["grpo"].update(max_steps=2, logging_steps=1, per_device_train_batch_size=8, num_generations=4,
                       disable_tqdm=True)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(ROOT / "examples/configs/accelerate/single_cpu.yaml"), str(ROOT / "examples/grpo_compose.py"),
         "--config", str(config)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2
    for name in ("math.accuracy", "format.boxed", "prm.score"):
        assert f"rewards/{name}/mean" in history[0]
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["per_reward_end"]) == {"math.accuracy", "format.boxed", "prm.score"}
    assert (run / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
