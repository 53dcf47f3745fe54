"""RewardMap on TRL GRPO: the multi-stage curriculum + ``rewardmap.reward`` on synthetic transit maps.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \\
        examples/rewardmap_grpo.py --config examples/configs/rewardmap_grpo.yaml

Synthetic metro maps with ReasonMap / ReasonMap-Plus questions, ordered stage by stage by the
``rewardmap.curriculum`` hook (true/false -> line counting -> stop counting -> planning), trained with
TRL's GRPOTrainer after a short SFT warm start on gold answers (tiny model; the map is text in the
prompt). ``--vlm`` trains the offline tiny Qwen2.5-VL on rendered maps instead, ``--vlm <id or path>``
that VLM. Arguments: this script's (below) and every ``GRPOConfig`` field, from the YAML file or the
command line (``--max_steps 8 --threshold 5.0``). Writes the run report (``metrics.jsonl`` with
``curriculum/stage``, ``summary.json``, ``rewards.png``) and ``stages.json`` (the reward per stage).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RewardMapArguments:
    model: str = field(default="tiny", metadata={"help": "'tiny', 'smollm2', a Hub id or a local path"})
    chat: bool = field(default=False, metadata={"help": "the question as one chat message (instruct models such as "
                                                        "smollm2); default: a plain text prompt"})
    vlm: str | None = field(default=None, metadata={"nargs": "?", "const": "tiny", "help": (
        "train a VLM on rendered maps: 'tiny' (also a bare --vlm) for the offline tiny Qwen2.5-VL, or an id / path")})
    n_maps: int = 8                   # synthetic maps; difficulties cycle easy / middle / hard
    questions_per_map: int = 16
    short_names: bool = True          # stations S1, S2, ...: short prompts for the tiny tokenizer
    image_size: int = 224             # rendered map size in pixels (--vlm)
    warmstart_steps: int | None = field(default=None, metadata={"help": "SFT steps first (default: 80 on tiny, else 0)"})
    warmstart_learning_rate: float = 3e-3
    warmstart_batch_size: int = 16
    reward: str = "rewardmap.reward"  # or rewardmap.route / rewardmap.plus
    alpha: float = 0.5
    transfer_penalty: str = "official"  # or "paper"
    difficulty_weights: bool = True
    stages: str = "official"          # official, coarse, fine or none
    curriculum_seed: int = 42
    threshold: float | None = field(default=None, metadata={"help": "gate advancement on this stage reward"})
    replay: float = field(default=0.0, metadata={"help": "fraction of earlier-stage prompts in later stages"})


def per_stage(history: list[dict[str, Any]], names: list[str], acc_key: str) -> list[dict[str, Any]]:
    """The reward curve cut by curriculum stage: steps, first/last quarter reward, mean accuracy."""
    def mean(rows, key):
        return sum(h.get(key, 0.0) for h in rows) / len(rows)

    out = []
    for k, name in enumerate(names):
        rows = [h for h in history if h.get("curriculum/stage") == float(k)]
        if rows:
            n = max(1, len(rows) // 4)
            out.append({"stage": k, "types": name, "steps": [rows[0]["step"], rows[-1]["step"]],
                        "reward_first_quarter": mean(rows[:n], "reward"), "reward_last_quarter": mean(rows[-n:], "reward"),
                        "reward_mean": mean(rows, "reward"), "acc_mean": mean(rows, acc_key)})
    return out


def main(args: RewardMapArguments, training_args) -> dict[str, Any]:
    from datasets import Dataset
    from rewardkit_rewardmap.data import gold_answer, make_dataset
    from run_report import reward_history, write_run_report
    from trl import GRPOTrainer
    from warm_start import warm_start_as_asked

    from rewardkit import get_hook, get_reward
    from rewardkit.testing import resolve_model
    from rewardkit.trl import build_trainer, end_run, launch_state

    state = launch_state(training_args.use_cpu)
    out, seed = Path(training_args.output_dir), training_args.seed
    vlm = "tiny" if args.vlm is True else args.vlm   # a YAML `vlm: true`
    rows = make_dataset(args.n_maps, args.questions_per_map, seed=seed, short_names=args.short_names,
                        images=bool(vlm), image_size=args.image_size, prompt_format="chat" if args.chat else "text",
                        as_list=True)
    reward = get_reward(args.reward, alpha=args.alpha, transfer_penalty=args.transfer_penalty,
                        difficulty_weights=args.difficulty_weights)
    hook = get_hook("rewardmap.curriculum", stages=args.stages, seed=args.curriculum_seed, threshold=args.threshold,
                    replay=args.replay)
    if vlm:
        from rewardkit_rewardmap.vision import vlm_trainer

        trainer, probe = vlm_trainer(vlm, Dataset.from_list(rows), training_args, state=state, rewards=[reward],
                                     hook=hook)
    else:
        model, tiny = resolve_model(args.model, state, seed=seed)
        sft = Dataset.from_list([{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": gold_answer(r)}]
                                  if args.chat else gold_answer(r)} for r in rows])
        model = warm_start_as_asked(model, sft, args, training_args, tiny=tiny, tiny_steps=80, state=state)
        trainer = build_trainer(GRPOTrainer, hooks=[hook], model=model, reward_funcs=[reward], args=training_args,
                                train_dataset=Dataset.from_list(rows))
    trainer.train()
    summary: dict[str, Any] = {}
    if state.is_main_process:
        if vlm:
            print(f"vision tower: {probe.calls} forward calls, {probe.patches} patch rows encoded")
        summary = write_run_report(trainer.state.log_history, [reward.name], out,
                                   title="RewardMap curriculum on synthetic transit maps")
        names = [hook.stage_name(k) for k in range(hook.num_stages)]
        stages = per_stage(reward_history(trainer.state.log_history), names, f"rewardmap/{reward.name}/acc")
        summary.update(stage_sizes=dict(zip(names, hook.stage_sizes)), stages=stages, advances=hook.advances)
        (out / "stages.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
    end_run(state)
    return summary


if __name__ == "__main__":
    from trl import GRPOConfig, TrlParser

    from rewardkit.trl import machine_defaults

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = TrlParser((RewardMapArguments, GRPOConfig))
    parser.set_defaults(**machine_defaults())
    main(*parser.parse_args_and_config())
