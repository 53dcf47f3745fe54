"""The main job: GRPO with composed rewardkit rewards on the bundled arithmetic problems.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/grpo_compose.py --config examples/configs/grpo_compose.yaml

It builds the embedded tiny Llama offline, warm-starts it with a short SFT so the rewards have
something to shape, trains a tiny process reward model on the bundled step-labelled chains, then
trains the policy with TRL's GRPOTrainer on ``rewards`` plus ``prm.score``. It writes
``metrics.jsonl``, ``summary.json`` and ``rewards.png`` into ``output_dir``. Arguments are this
script's (below) and every ``GRPOConfig`` field, from the YAML file or the command line, as in TRL's
own scripts: ``--max_steps 4``, ``--warmstart_steps 0``, ``--model smollm2`` (the offline
SmolLM2-135M-Instruct), ``--model Qwen/Qwen2.5-0.5B-Instruct``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ComposeArguments:
    model: str = field(default="tiny", metadata={"help": "'tiny', 'smollm2', a Hub id or a local path"})
    rewards: dict | str | None = field(default_factory=lambda: {"math.accuracy": 1.0, "format.boxed": 0.5}, metadata={
        "help": "registered reward -> weight or {weight: w, <params>} (YAML mapping; a string is read as YAML)"})
    hooks: list[str] = field(default_factory=list, metadata={"help": "trainer hooks by registered name"})
    n_train: int = field(default=256, metadata={"help": "arithmetic problems to train on"})
    chat: bool = field(default=False, metadata={"help": "ask as a chat message that requests a \\boxed{} answer "
                                                        "(instruct models such as smollm2)"})
    warmstart_steps: int | None = field(default=None, metadata={"help": "SFT steps first (default: 60 on tiny, else 0)"})
    warmstart_learning_rate: float = 3e-3
    warmstart_batch_size: int = 16
    prm_weight: float = field(default=0.1, metadata={"help": "weight of prm.score; 0 leaves it out"})
    prm_model: str | None = field(default=None, metadata={"help": "a trained PRM; none: train the tiny one here"})
    prm_reducer: str = "min"
    prm_train_epochs: int = 10
    prm_learning_rate: float = 3e-3

    def __post_init__(self) -> None:
        if isinstance(self.rewards, str):
            self.rewards = yaml.safe_load(self.rewards)
        if not isinstance(self.rewards, dict) or not self.rewards:
            raise ValueError(f"rewards must be a non-empty mapping of reward name -> weight, got {self.rewards!r}")
        self.hooks = [yaml.safe_load(h) if isinstance(h, str) and h.lstrip().startswith("{") else h
                      for h in self.hooks]


def arithmetic_datasets(n_train: int, chat: bool = False):
    from datasets import Dataset

    from rewardkit.data import load_arithmetic, to_prompt

    def prompt(r):
        if chat:
            return [{"role": "user", "content": f"{r['question']} Put the final answer in \\boxed{{}}."}]
        return to_prompt(r)

    rows = load_arithmetic()[:n_train]
    prompts = Dataset.from_list([{"prompt": prompt(r), "solution": r["solution"]} for r in rows])
    sft = Dataset.from_list([{"prompt": to_prompt(r), "completion": f" \\boxed{{{r['solution']}}}"} for r in rows])
    return prompts, sft


def process_reward(args: ComposeArguments, out: Path, seed: int, state) -> dict[str, Any]:
    """The ``prm.score`` spec entry: the given PRM, or a tiny PRM trained here by the main process
    alone (prepare=False: no DeepSpeed, so no collective another rank would wait for)."""
    model = args.prm_model
    if model is None:
        from rewardkit.data.steps import load_toy_steps
        from rewardkit.prm.scorers import TaggedScorer
        from rewardkit.prm.training import PRMTrainingConfig, step_accuracy, train_prm
        from rewardkit.testing import tiny_model_dir

        model = str(out / "prm")
        if state.is_main_process:
            train_prm(str(tiny_model_dir("prm", seed=seed)), load_toy_steps("train"),
                      PRMTrainingConfig(epochs=args.prm_train_epochs, learning_rate=args.prm_learning_rate,
                                        output_dir=model, seed=seed))
            acc = step_accuracy(TaggedScorer(model, prepare=False), load_toy_steps("test"))
            print(f"process reward: tiny PRM trained {args.prm_train_epochs} epochs, held-out step accuracy {acc:.3f}")
        state.wait_for_everyone()
    return {"weight": args.prm_weight, "model": model, "reducer": args.prm_reducer}


def main(args: ComposeArguments, training_args) -> dict[str, Any]:
    from run_report import write_run_report
    from trl import GRPOTrainer
    from warm_start import warm_start_as_asked

    from rewardkit import compose
    from rewardkit.testing import resolve_model
    from rewardkit.trl import build_trainer, end_run, launch_state

    state = launch_state(training_args.use_cpu)
    out = Path(training_args.output_dir)
    model, tiny = resolve_model(args.model, state, seed=training_args.seed)
    prompts, sft = arithmetic_datasets(args.n_train, args.chat)
    model = warm_start_as_asked(model, sft, args, training_args, tiny=tiny, tiny_steps=60, state=state)
    spec = dict(args.rewards)
    if args.prm_weight:
        spec["prm.score"] = process_reward(args, out, training_args.seed, state)
    rewards = compose(spec)
    for key, value in rewards.grpo_kwargs().items():
        setattr(training_args, key, value)
    trainer = build_trainer(GRPOTrainer, hooks=args.hooks, model=model, reward_funcs=rewards.funcs,
                            args=training_args, train_dataset=prompts)
    trainer.train()
    summary: dict[str, Any] = {}
    if state.is_main_process:
        summary = write_run_report(trainer.state.log_history, rewards.names, out, weights=rewards.weights)
        print(json.dumps(summary, indent=2))
        print(f"wrote {out / 'metrics.jsonl'}, {out / 'summary.json'} and {out / 'rewards.png'}")
    end_run(state)
    return summary


if __name__ == "__main__":
    from trl import GRPOConfig, TrlParser

    from rewardkit.trl import machine_defaults

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = TrlParser((ComposeArguments, GRPOConfig))
    parser.set_defaults(**machine_defaults())
    main(*parser.parse_args_and_config())
