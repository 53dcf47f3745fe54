"""GRPO with ReasonFlux-PRM reward mixing (paper Eq. 12): r = (1 - beta) * rule + beta * PRM.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/reasonflux_grpo.py --config examples/configs/reasonflux_grpo.yaml

The policy is the offline tiny Llama (warm-started by a short SFT on the bundled arithmetic
problems so it writes boxed answers), the rule reward is ``math.accuracy`` and the PRM reward is
``reasonflux.prm`` (preset ``official`` scores the whole response as one step at the last token, as
the released verl worker does; ``paper`` uses Eq. 11). ``--prm tiny`` uses the untrained tiny PRM;
point it at ``runs/reasonflux_prm/prm`` (``examples/train_reasonflux_prm.py``) or a real checkpoint.
Arguments are this script's (below) and every ``GRPOConfig`` field, from the YAML file or the
command line. Writes ``metrics.jsonl``, ``summary.json`` and ``rewards.png`` into ``output_dir``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ReasonFluxGRPOArguments:
    model: str = field(default="tiny", metadata={"help": "'tiny', 'smollm2', a Hub id or a local path"})
    prm: str = field(default="tiny", metadata={"help": "'tiny' (untrained) or a path to a ReasonFlux-style PRM"})
    preset: str = field(default="official", metadata={"help": "rewardkit_reasonflux.config preset: official or paper"})
    mix_beta: float = field(default=0.75, metadata={"help": "the PRM's share in Eq. 12 (released code: 0.75)"})
    prm_params: dict | str | None = field(default=None, metadata={
        "help": "other reasonflux.prm parameters (alpha, read_at, system_prompt, ...; YAML mapping)"})
    extra_rewards: dict | str | None = field(default=None, metadata={
        "help": "more rewards, e.g. {reasonflux.alignment: {weight: 0.1, no_think: all}} (YAML mapping)"})
    n_train: int = field(default=256, metadata={"help": "arithmetic problems to train on"})
    chat: bool = field(default=False, metadata={"help": "ask as a chat message that requests a \\boxed{} answer "
                                                        "(instruct models such as smollm2)"})
    warmstart_steps: int | None = field(default=None, metadata={"help": "SFT steps first (default: 40 on tiny, else 0)"})
    warmstart_learning_rate: float = 3e-3
    warmstart_batch_size: int = 16
    torch_threads: int = field(default=0, metadata={"help": "torch threads per process (0: torch's default)"})

    def __post_init__(self) -> None:
        for name in ("prm_params", "extra_rewards"):
            value = getattr(self, name)
            value = yaml.safe_load(value) if isinstance(value, str) else value
            if not isinstance(value, dict | None):
                raise ValueError(f"{name} must be a mapping, got {value!r}")
            setattr(self, name, value or {})


def main(args: ReasonFluxGRPOArguments, training_args) -> dict[str, Any]:
    from grpo_compose import arithmetic_datasets
    from rewardkit_reasonflux.config import get_preset
    from run_report import write_run_report
    from trl import GRPOTrainer
    from warm_start import warm_start_as_asked

    from rewardkit import compose
    from rewardkit.testing import resolve_model
    from rewardkit.trl import end_run, launch_state

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    state = launch_state(training_args.use_cpu)
    out = Path(training_args.output_dir)
    model, tiny = resolve_model(args.model, state, seed=training_args.seed)
    prompts, sft = arithmetic_datasets(args.n_train, args.chat)
    model = warm_start_as_asked(model, sft, args, training_args, tiny=tiny, tiny_steps=40, state=state)
    prm = resolve_model(None, state, kind="prm")[0] if args.prm == "tiny" else args.prm
    spec = get_preset(args.preset, beta=args.mix_beta).spec(prm, prm_params=args.prm_params)
    spec.update(args.extra_rewards)
    rewards = compose(spec)
    for key, value in rewards.grpo_kwargs().items():  # reward_weights = [1 - beta, beta, extras...]
        setattr(training_args, key, value)
    trainer = GRPOTrainer(model=model, reward_funcs=rewards.funcs, args=training_args, train_dataset=prompts)
    trainer.train()
    summary: dict[str, Any] = {}
    if state.is_main_process:
        summary = write_run_report(trainer.state.log_history, rewards.names, out, weights=rewards.weights,
                                   title="ReasonFlux-PRM reward mixing during GRPO", total_label="mixed (Eq. 12)")
        print(json.dumps(summary, indent=2))
    end_run(state)
    return summary


if __name__ == "__main__":
    from trl import GRPOConfig, TrlParser

    from rewardkit.trl import machine_defaults

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = TrlParser((ReasonFluxGRPOArguments, GRPOConfig))
    parser.set_defaults(**machine_defaults())
    main(*parser.parse_args_and_config())
