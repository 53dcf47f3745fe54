"""RewardMap on TRL GRPO: the multi-stage curriculum + ``rewardmap.reward`` on synthetic transit maps.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \\
        examples/rewardmap_grpo.py --config examples/configs/rewardmap_grpo.yaml

It generates synthetic metro maps with ReasonMap / ReasonMap-Plus questions
(``rewardkit_rewardmap.data.make_dataset``), orders them stage by stage with the
``rewardmap.curriculum`` hook (true/false -> line counting -> stop counting -> route planning), and
trains with TRL's GRPOTrainer on the type-dispatched RewardMap reward. With the default embedded
tiny model it first warm-starts it with a short SFT on gold answers (so the answers have the right
shape), and the map is given as text in the prompt. ``--vlm`` trains the offline tiny Qwen2.5-VL on rendered
maps instead (each map a PNG in an ``images`` column, the input TRL gives vision-language models,
and no map text in the prompt); ``--vlm Qwen/Qwen2.5-VL-3B-Instruct`` (or a path) trains that VLM.

Outputs in ``output_dir``: ``metrics.jsonl`` (one line per logged step, with ``curriculum/stage``),
``stages.json`` (the reward curve summarised per stage) and ``reward_by_stage.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def gold_completion(row: dict[str, Any]) -> str:
    """The answer the reward gives full correctness for (used only for the warm start)."""
    t, a = row["type"], row["answer"]
    if t == "planning":
        return row["reference_route"]
    if t in ("TorF1", "TorF2"):
        return "\\boxed{" + ("yes" if a == "1" else "no") + "}"
    if t == "Counting1":
        return "\\boxed{" + "ABCD"[int(a)] + "}"
    return "\\boxed{" + a + "}"


def warm_start(model_path: str, rows: list[dict[str, Any]], cfg: dict[str, Any], out: Path, state,
               use_cpu: bool) -> str:
    from datasets import Dataset

    from rewardkit.recipes import sft_warm_start

    ws = cfg.get("warmstart", {})
    sft = Dataset.from_list([{"prompt": r["prompt"], "completion": gold_completion(r)} for r in rows])
    return sft_warm_start(model_path, sft, out / "warmstart", steps=ws.get("steps", 80),
                          learning_rate=ws.get("learning_rate", 3e-3), batch_size=ws.get("batch_size", 16),
                          seed=cfg.get("seed", 0), use_cpu=use_cpu, state=state)


def per_stage(history: list[dict[str, Any]], stage_names: list[str], acc_key: str) -> list[dict[str, Any]]:
    """The reward curve cut by curriculum stage: steps, first/last reward, mean accuracy."""
    out = []
    for k, name in enumerate(stage_names):
        rows = [h for h in history if h.get("curriculum/stage") == float(k)]
        if not rows:
            continue
        n = max(1, len(rows) // 4)
        out.append({"stage": k, "types": name, "steps": [rows[0]["step"], rows[-1]["step"]],
                    "reward_first_quarter": sum(h["reward"] for h in rows[:n]) / n,
                    "reward_last_quarter": sum(h["reward"] for h in rows[-n:]) / n,
                    "reward_mean": sum(h["reward"] for h in rows) / len(rows),
                    "acc_mean": sum(h.get(acc_key, 0.0) for h in rows) / len(rows)})
    return out


def plot(history: list[dict[str, Any]], stage_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for k, name in enumerate(stage_names):
        pts = [(h["step"], h["reward"]) for h in history if h.get("curriculum/stage") == float(k)]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "o-", ms=3, label=f"stage {k}: {name}")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean RewardMap reward")
    ax.set_title("RewardMap curriculum on synthetic transit maps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from rewardkit_rewardmap.data import make_dataset
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit import get_hook, get_reward
    from rewardkit.recipes import (
        end_run,
        launch_state,
        load_example_config,
        resolve_model,
        reward_history,
        write_metrics,
    )
    from rewardkit.trl import build_trainer

    cfg = load_example_config("examples/configs/rewardmap_grpo.yaml", description=__doc__,
                              aliases={"max_steps": "grpo.max_steps", "warmstart_steps": "warmstart.steps",
                                       "images": "data.images", "vlm": "vlm"})
    state, use_cpu = launch_state(cfg.get("grpo", {}).get("use_cpu"))
    out = Path(cfg.get("output_dir", "runs/rewardmap_grpo"))
    out.mkdir(parents=True, exist_ok=True)
    seed = cfg.get("seed", 0)

    data_cfg = dict(cfg.get("data", {}))
    vlm = cfg.get("vlm")  # true: the tiny VLM; a string: a VLM id or path
    if vlm:
        data_cfg.update(images=True, image_size=data_cfg.get("image_size", 224))
    rows = make_dataset(seed=seed, as_list=True, **data_cfg)
    from datasets import Dataset

    train = Dataset.from_list(rows)

    model, tiny = (None, False) if vlm else resolve_model(cfg.get("model"), state, seed=seed)
    if not vlm and cfg.get("warmstart", {}).get("steps", 80 if tiny else 0) > 0:
        model = warm_start(model, rows, cfg, out, state, use_cpu)

    reward_cfg = dict(cfg.get("reward", {}))
    reward = get_reward(reward_cfg.pop("name", "rewardmap.reward"), **reward_cfg)
    hook = get_hook("rewardmap.curriculum", **cfg.get("curriculum", {}))
    grpo = dict(cfg.get("grpo", {}))
    grpo.setdefault("bf16", False)
    grpo["use_cpu"] = use_cpu
    config = GRPOConfig(output_dir=str(out), report_to="none", seed=seed, **grpo)
    if vlm:
        from rewardkit_rewardmap.vision import vlm_trainer

        trainer, probe = vlm_trainer("tiny" if vlm is True else str(vlm), train, config, state=state,
                                     rewards=[reward], hook=hook)
    else:
        trainer = build_trainer(GRPOTrainer, hooks=[hook], model=model, reward_funcs=[reward], args=config,
                                train_dataset=train)
    trainer.train()
    if vlm and state.is_main_process:
        print(f"vision tower: {probe.calls} forward calls, {probe.patches} patch rows encoded")

    if state.is_main_process:
        history = reward_history(trainer.state.log_history)
        write_metrics(history, out / "metrics.jsonl")
        names = [hook.stage_name(k) for k in range(hook.num_stages)]
        stages = per_stage(history, names, f"rewardmap/{reward.name}/acc")
        summary = {"stage_sizes": dict(zip(names, hook.stage_sizes)), "stages": stages,
                   "advances": hook.advances, "steps": len(history)}
        (out / "stages.json").write_text(json.dumps(summary, indent=2))
        plot(history, names, out / "reward_by_stage.png")
        print(json.dumps(summary, indent=2))
        print(f"wrote {out / 'metrics.jsonl'}, {out / 'stages.json'} and {out / 'reward_by_stage.png'}")
    end_run(state)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
