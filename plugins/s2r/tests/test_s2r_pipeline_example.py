"""examples/s2r_pipeline.py's arguments: TRL's parser on the YAML config, flags override it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples/configs/s2r_pipeline.yaml"


@pytest.fixture(scope="module")
def parse():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from s2r_pipeline import S2RArguments
    finally:
        sys.path.remove(str(ROOT / "examples"))
    from trl import GRPOConfig, TrlParser

    from rewardkit.trl import machine_defaults

    def run(argv):
        parser = TrlParser((S2RArguments, GRPOConfig))
        parser.set_defaults(**machine_defaults())
        return parser.parse_args_and_config(argv)

    return run


def test_config_file_then_flags(parse):
    args, grpo = parse(["--config", str(CONFIG)])
    assert (args.model, args.level, args.baseline, args.k, args.warmup_epochs) == ("tiny", "process", "group", 5, 16)
    assert (grpo.num_generations, grpo.max_steps, grpo.beta, grpo.scale_rewards, grpo.loss_type) == (4, 30, 0.0, "none",
                                                                                                     "grpo")
    assert grpo.output_dir == "runs/s2r_pipeline"
    args, grpo = parse(["--config", str(CONFIG), "--level", "outcome", "--max_steps", "3", "--judge",
                        "http://127.0.0.1:8000/v1"])
    assert (args.level, args.judge, grpo.max_steps) == ("outcome", "http://127.0.0.1:8000/v1", 3)


@pytest.mark.parametrize("argv, message", [(["--level", "token"], "level must be 'process' or 'outcome'"),
                                           (["--warmup_epocs", "2"], "--warmup_epocs")])
def test_bad_arguments_fail_with_a_message(parse, argv, message, capsys):
    with pytest.raises((SystemExit, ValueError)) as info:
        parse(["--config", str(CONFIG), *argv])
    assert message in str(info.value) + capsys.readouterr().err
