"""examples/flowgrpo_agent.py: its arguments (preset < YAML < flags) and a short real run under accelerate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rewardkit.testing import free_port

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples/configs/flowgrpo_agent.yaml"


@pytest.fixture(scope="module")
def parse_arguments():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from flowgrpo_agent import parse_arguments
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return parse_arguments


def test_the_preset_sets_grpo_defaults_the_yaml_and_flags_override_them(parse_arguments):
    args, grpo = parse_arguments(["--config", str(CONFIG)])
    assert (args.group_size, args.max_turns, args.queries_per_step) == (8, 3, 2)
    assert grpo.num_generations == 24 and grpo.per_device_train_batch_size == 48  # G*T_max rows per query
    assert (grpo.loss_type, grpo.epsilon, grpo.scale_rewards) == ("grpo", 0.2, "none")  # the paper preset
    assert grpo.temperature == 1.0  # the YAML overrides the paper preset's 0.5
    args, grpo = parse_arguments(["--config", str(CONFIG), "--preset", "code", "--group_size", "4",
                                  "--beta", "0.04", "--max_steps", "3"])
    assert grpo.num_generations == 12 and grpo.per_device_train_batch_size == 24
    assert (grpo.loss_type, grpo.epsilon_high, grpo.delta, grpo.beta, grpo.max_steps) == ("bnpo", 0.3, 3.0, 0.04, 3)
    with pytest.raises((SystemExit, ValueError)):
        parse_arguments(["--config", str(CONFIG), "--max_turnz", "2"])  # a typo is an error


def test_example_trains_and_writes_its_report(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRL_EXPERIMENTAL_SILENCE": "1"}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "examples/configs/accelerate/single_cpu.yaml"), "--main_process_port", str(free_port()),
           str(ROOT / "examples/flowgrpo_agent.py"), "--config", str(CONFIG), "--output_dir", str(run),
           "--max_steps", "2", "--format_warmup_steps", "2", "--train_queries", "8", "--eval_queries", "2",
           "--eval_group_size", "1", "--group_size", "2", "--max_completion_length", "6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out success (greedy)" in proc.stdout
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1  # steps_per_generation 2: one rollout batch (and its rewards) serves both steps
    assert "flowgrpo/zero_std_frac" in history[0] and "rewards/flowgrpo.outcome/mean" in history[0]
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["before"]) == set(summary["after"]) == {"sampled", "greedy"}
    assert summary["hook_totals"]["trajectories"] == 2 * 2 * 2  # steps x queries per step x G
    assert (run / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
