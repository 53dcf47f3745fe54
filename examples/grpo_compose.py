"""The main job: GRPO with composed rewardkit rewards, driven by a YAML config.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/grpo_compose.py --config examples/configs/grpo_compose.yaml

By default it builds the embedded tiny Llama model offline, warm-starts it with a short SFT on the
bundled arithmetic problems (TRL's SFTTrainer) so that the rewards have something to shape, trains
a tiny process reward model (PRM) on the bundled step-labelled chains, then trains the policy with
TRL's GRPOTrainer on the config's ``rewards`` spec plus ``prm.score`` (the PRM's step scores). It writes
``metrics.jsonl`` (one line per logged step) and ``rewards.png`` (each reward's mean over steps)
into ``output_dir``. ``--model Qwen/Qwen2.5-0.5B-Instruct`` (or any path) trains a real model
instead, without the warm start unless asked. Any config key can be overridden on the command line:
``--max-steps 4``, ``--warmstart-steps 0``, ``--grpo.learning_rate 1e-5``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def datasets_from(cfg: dict[str, Any]):
    from datasets import Dataset

    from rewardkit.data import load_arithmetic, to_prompt

    rows = load_arithmetic()
    n_train = cfg.get("dataset", {}).get("n_train", 256)
    train = rows[:n_train]
    prompts = Dataset.from_list([{"prompt": to_prompt(r), "solution": r["solution"]} for r in train])
    sft = Dataset.from_list([{"prompt": to_prompt(r), "completion": f" \\boxed{{{r['solution']}}}"} for r in train])
    return prompts, sft


def train_process_reward(cfg: dict[str, Any], out: Path, state) -> dict[str, Any]:
    """The ``prm.score`` spec entry: a PRM given by path/id, or the tiny PRM trained here on the
    bundled step-labelled arithmetic chains (rewardkit.data.load_toy_steps)."""
    pr = dict(cfg["process_reward"])
    model = pr.pop("model", None)
    epochs = pr.pop("train_epochs", 10)
    lr = pr.pop("learning_rate", 3e-3)
    if model is None:
        from rewardkit.data.steps import load_toy_steps
        from rewardkit.prm.scorers import TaggedScorer
        from rewardkit.prm.training import PRMTrainingConfig, step_accuracy, train_prm
        from rewardkit.testing import tiny_model_dir

        target = out / "prm"
        if state.is_main_process:
            base = tiny_model_dir("prm", seed=cfg.get("seed", 0))
            train_prm(str(base), load_toy_steps("train"),
                      PRMTrainingConfig(epochs=epochs, learning_rate=lr, output_dir=str(target), seed=cfg.get("seed", 0)))
            # prepare=False: scored here by the main process alone, so no DeepSpeed (no collective)
            acc = step_accuracy(TaggedScorer(str(target), prepare=False), load_toy_steps("test"))
            print(f"process reward: tiny PRM trained {epochs} epochs, held-out step accuracy {acc:.3f}")
        state.wait_for_everyone()
        model = str(target)
    return {"weight": pr.pop("weight", 0.25), "model": model, **pr}


def main() -> None:
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit import compose
    from rewardkit.recipes import (
        end_run,
        launch_state,
        load_example_config,
        resolve_model,
        sft_warm_start,
        write_run_report,
    )
    from rewardkit.trl import build_trainer

    cfg = load_example_config("examples/configs/grpo_compose.yaml", description=__doc__,
                              aliases={"max_steps": "grpo.max_steps", "warmstart_steps": "warmstart.steps"})
    state, use_cpu = launch_state(cfg.get("grpo", {}).get("use_cpu"))
    cfg.setdefault("grpo", {})["use_cpu"] = use_cpu
    out = Path(cfg.get("output_dir", "runs/grpo_compose"))
    out.mkdir(parents=True, exist_ok=True)

    model, tiny = resolve_model(cfg.get("model"), state, seed=cfg.get("seed", 0))
    prompts, sft = datasets_from(cfg)
    ws = cfg.get("warmstart", {})
    if ws.get("steps", 40 if tiny else 0) > 0:
        model = sft_warm_start(model, sft, out / "warmstart", steps=ws.get("steps", 40),
                               learning_rate=ws.get("learning_rate", 3e-3), batch_size=ws.get("batch_size", 16),
                               seed=cfg.get("seed", 0), use_cpu=use_cpu, state=state)

    spec = dict(cfg["rewards"])
    if cfg.get("process_reward"):
        spec["prm.score"] = train_process_reward(cfg, out, state)
    rewards = compose(spec)
    grpo = dict(cfg.get("grpo", {}))
    grpo.setdefault("bf16", False)
    config = GRPOConfig(output_dir=str(out), report_to="none", seed=cfg.get("seed", 0),
                        **rewards.grpo_kwargs(), **grpo)
    trainer = build_trainer(GRPOTrainer, hooks=cfg.get("hooks", []), model=model, reward_funcs=rewards.funcs,
                            args=config, train_dataset=prompts)
    trainer.train()

    if state.is_main_process:
        summary = write_run_report(trainer.state.log_history, rewards.names, out, weights=rewards.weights)
        print(json.dumps(summary, indent=2))
        print(f"wrote {out / 'metrics.jsonl'} and {out / 'rewards.png'}")
    end_run(state)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
