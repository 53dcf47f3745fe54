"""The ReasonFlux examples: their YAML configs parse with TRL's parser, and each script runs end to end
on tiny settings (PRM training -> selection / Best-of-N with that PRM; GRPO under accelerate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rewardkit.testing import free_port

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "TRL_EXPERIMENTAL_SILENCE": "1"}


def parse(dataclasses, config: str, *argv: str):
    from trl import TrlParser

    from rewardkit.trl import machine_defaults

    parser = TrlParser(dataclasses)
    if any(d.__name__ == "GRPOConfig" for d in dataclasses):
        parser.set_defaults(**machine_defaults())  # as the GRPO script does (no bf16 on a CPU)
    return parser.parse_args_and_config(["--config", str(EXAMPLES / "configs" / config), *argv])


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import reasonflux_grpo
        import reasonflux_select
        import train_reasonflux_prm

        yield reasonflux_grpo, reasonflux_select, train_reasonflux_prm
    finally:
        sys.path.remove(str(EXAMPLES))


def test_configs_parse_flat_and_flags_override(scripts):
    from rewardkit_reasonflux.training import ReasonFluxPRMConfig
    from trl import GRPOConfig

    grpo, select, train = scripts
    args, cfg = parse((grpo.ReasonFluxGRPOArguments, GRPOConfig), "reasonflux_grpo.yaml", "--max_steps", "3",
                      "--extra_rewards", "{reasonflux.alignment: 0.1}")
    assert (args.preset, args.mix_beta, args.prm_params, cfg.max_steps) == ("official", 0.75, {}, 3)
    assert args.extra_rewards == {"reasonflux.alignment": 0.1} and cfg.output_dir == "runs/reasonflux_grpo"
    (args,) = parse((select.SelectArguments,), "reasonflux_select.yaml", "--top_k", "5")
    assert args.top_k == 5 and args.reward_params == {"alpha": 1.0, "mode": "paper"} and args.teacher
    args, cfg = parse((train.TrainPRMArguments, ReasonFluxPRMConfig), "reasonflux_train_prm.yaml")
    assert (cfg.epochs, cfg.batch_size, cfg.output_dir, args.data) == (12, 8, "runs/reasonflux_prm", "toy")
    with pytest.raises(ValueError, match="prm_params must be a mapping"):
        grpo.ReasonFluxGRPOArguments(prm_params="[1, 2]")


def run(cmd: list[str], timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_prm_training_then_selection_with_that_prm(tmp_path):
    run([str(EXAMPLES / "train_reasonflux_prm.py"), "--config", str(EXAMPLES / "configs/reasonflux_train_prm.yaml"),
         "--output_dir", str(tmp_path / "prm_run"), "--epochs", "1"])
    summary = json.loads((tmp_path / "prm_run/summary.json").read_text())
    assert summary["loss_last_epoch"] > 0 and (tmp_path / "prm_run/prm/config.json").exists()
    assert (tmp_path / "prm_run/training.png").read_bytes()[:4] == b"\x89PNG"
    run([str(EXAMPLES / "reasonflux_select.py"), "--config", str(EXAMPLES / "configs/reasonflux_select.yaml"),
         "--prm", summary["prm"], "--output_dir", str(tmp_path / "select"), "--teacher", "false"])
    report = json.loads((tmp_path / "select/report.json").read_text())["reasonflux.prm"]
    selected = (tmp_path / "select/selected.jsonl").read_text().splitlines()
    assert len(selected) == report["selection"]["selected"] == 24
    # Best-of-1 is any candidate: the oracle, the vote and the PRM agree there
    one = report["best_of_n"]["1"]
    assert one["bon"] == one["oracle"] == one["majority"]


@pytest.mark.slow
def test_grpo_example_mixes_the_rule_and_the_prm(tmp_path):
    cfg = yaml.safe_load((EXAMPLES / "configs/reasonflux_grpo.yaml").read_text())
    cfg.update(output_dir=str(tmp_path / "run"), n_train=16, warmstart_steps=1, warmstart_batch_size=8, max_steps=2,
               logging_steps=1, per_device_train_batch_size=8, num_generations=4)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run(["-m", "accelerate.commands.launch", "--config_file", str(EXAMPLES / "configs/accelerate/single_cpu.yaml"),
         "--main_process_port", str(free_port()), str(EXAMPLES / "reasonflux_grpo.py"), "--config", str(config)])
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["steps"] == 2 and summary["weights"] == {"math.accuracy": 0.25, "reasonflux.prm": 0.75}
    history = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    for h in history:  # TRL's total is the Eq. 12 mix of the two logged means
        mix = 0.25 * h["rewards/math.accuracy/mean"] + 0.75 * h["rewards/reasonflux.prm/mean"]
        assert h["reward"] == pytest.approx(mix, abs=1e-6)
        assert "reasonflux.prm/trajectory_score_mean" in h
