"""What every example shares: TRL-style arguments (TrlParser: YAML via --config, flags override),
machine defaults, the model resolver and the run report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from grpo_compose import ComposeArguments  # noqa: E402
from run_report import reward_summary, write_run_report  # noqa: E402


def parse(argv):
    from trl import GRPOConfig, TrlParser

    from rewardkit.trl import machine_defaults

    parser = TrlParser((ComposeArguments, GRPOConfig))
    parser.set_defaults(**machine_defaults())
    return parser.parse_args_and_config(argv)


def test_yaml_config_then_flags_override_it():
    args, grpo = parse(["--config", str(ROOT / "examples/configs/grpo_compose.yaml"), "--max-steps", "4",
                        "--warmstart_steps", "0", "--model", "smollm2", "--rewards", "{math.accuracy: 2.0}"])
    assert (args.model, args.warmstart_steps, grpo.max_steps) == ("smollm2", 0, 4)
    assert args.rewards == {"math.accuracy": 2.0}  # a flag's YAML string is read as a mapping
    assert grpo.num_generations == 8 and grpo.output_dir == "runs/grpo_compose"  # the rest from the file
    args, _ = parse(["--config", str(ROOT / "examples/configs/grpo_compose.yaml")])
    assert args.rewards == {"math.accuracy": 1.0, "format.boxed": 0.5}


def test_machine_defaults_give_way_to_the_config_and_flags():
    import torch

    args, grpo = parse(["--output_dir", "x"])
    assert args.rewards == {"math.accuracy": 1.0, "format.boxed": 0.5}
    assert grpo.use_cpu is (not torch.cuda.is_available())
    if not torch.cuda.is_available():
        assert grpo.bf16 is False  # GRPOConfig's own default (bf16) refuses to start on a CPU


@pytest.mark.parametrize("argv, message", [
    (["--max_stepz", "4"], "--max_stepz"),                # a typo is an error, never silently ignored
    (["--rewards", "[1, 2]"], "rewards must be a non-empty mapping"),
])
def test_bad_arguments_fail_with_a_message(argv, message, capsys):
    with pytest.raises((SystemExit, ValueError)) as info:
        parse(["--output_dir", "x", *argv])
    assert message in (str(info.value) + capsys.readouterr().err)


def test_an_unknown_key_in_the_yaml_file_is_an_error(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text((ROOT / "examples/configs/grpo_compose.yaml").read_text() + "prm_wieght: 0.2\n")
    with pytest.raises(ValueError, match="prm_wieght"):
        parse(["--config", str(cfg)])


def test_resolve_model_builds_the_tiny_model_and_passes_other_names_through(tmp_path):
    from accelerate import PartialState

    from rewardkit.testing import resolve_model

    path, tiny = resolve_model("tiny", PartialState())
    assert tiny and (Path(path) / "config.json").exists()
    assert resolve_model(None)[1] is True
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == ("Qwen/Qwen2.5-0.5B-Instruct", False)
    assert resolve_model(str(tmp_path)) == (str(tmp_path), False)


def test_run_report_writes_metrics_summary_and_plot(tmp_path):
    history = [{"step": s, "loss": 0.1} for s in range(3)]  # entries without a reward are not metrics
    history += [{"step": s, "reward": s / 10, "rewards/a/mean": s / 5} for s in range(1, 11)]
    summary = write_run_report(history, ["a"], tmp_path, weights=[1.0])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 10 and json.loads(lines[0])["reward"] == 0.1
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    # start/end: means of the first and last fifth (2 of 10 logged steps)
    assert summary["reward_start"] == pytest.approx(0.15) and summary["reward_end"] == pytest.approx(0.95)
    assert summary["per_reward_end"] == {"a": pytest.approx(1.9)} and summary["weights"] == {"a": 1.0}
    assert (tmp_path / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert reward_summary([], ["a"])["steps"] == 0
