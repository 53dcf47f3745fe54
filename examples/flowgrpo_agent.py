"""Flow-GRPO (AgentFlow, arXiv 2510.05592) on a toy tool task with a tiny planner.

The planner (the only trained module) must call ``lookup`` (prices live only in local documents)
before ``calculator``; executor, verifier and generator are frozen Python modules sharing the
structured memory. Prints the success rate before and after training and saves a plot.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/flowgrpo_agent.py --config examples/configs/flowgrpo_agent.yaml [--max_steps 10 ...]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def evaluate(system, model, tok, rows, cfg, label):
    from rewardkit_flowgrpo import HFPlanner
    from rewardkit_flowgrpo.toy import success_rate

    sampled = success_rate(system, HFPlanner(model, tok, max_new_tokens=cfg["max_completion_length"],
                                             temperature=cfg["temperature"]), rows, group_size=cfg["eval_group_size"])
    greedy = success_rate(system, HFPlanner(model, tok, max_new_tokens=cfg["max_completion_length"], do_sample=False),
                          rows)
    print(f"[{label}] success sampled (T={cfg['temperature']}) {sampled['success']:.3f}  greedy {greedy['success']:.3f}"
          f"  turns {sampled['turns']:.2f}")
    return {"sampled": sampled, "greedy": greedy}


def plot(history, before, after, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history if "flowgrpo/success" in h]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(steps, [h["flowgrpo/success"] for h in history if "flowgrpo/success" in h], label="rollout success")
    axes[0].plot(steps, [h["flowgrpo/zero_std_frac"] for h in history if "flowgrpo/success" in h],
                 label="zero-std groups", alpha=0.6)
    axes[0].set(xlabel="step", title="Flow-GRPO training rollouts", ylim=(-0.02, 1.02))
    axes[0].legend()
    axes[1].plot(steps, [h["flowgrpo/turns_mean"] for h in history if "flowgrpo/success" in h])
    axes[1].set(xlabel="step", title="planner turns per trajectory")
    names = ["sampled", "greedy"]
    x = range(len(names))
    axes[2].bar([i - 0.2 for i in x], [before[n]["success"] for n in names], 0.4, label="before")
    axes[2].bar([i + 0.2 for i in x], [after[n]["success"] for n in names], 0.4, label="after")
    axes[2].set_xticks(list(x), names)
    axes[2].set(ylim=(0, 1.05), title="held-out success rate")
    axes[2].legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    from rewardkit.recipes import load_example_config

    cfg = load_example_config("examples/configs/flowgrpo_agent.yaml", description=__doc__)
    import torch

    torch.set_num_threads(int(cfg.get("torch_threads") or 1))
    from rewardkit_flowgrpo import FlowRollout, grpo_kwargs
    from rewardkit_flowgrpo.toy import format_warmup, toy_dataset, toy_rows, toy_system
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit import get_reward
    from rewardkit.recipes import end_run
    from rewardkit.testing import tiny_model_dir
    from rewardkit.trl import build_trainer

    set_seed(cfg["seed"])
    out = Path(cfg["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    base = cfg["model"] or str(tiny_model_dir())
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    system = toy_system(tok, max_turns=cfg["max_turns"], on_tool_error=cfg["on_tool_error"])
    eval_rows = toy_rows(cfg["eval_queries"], seed=cfg["seed"] + 1000)

    t0 = time.time()
    if cfg["warmup_steps"]:
        losses = format_warmup(model, tok, system, [r["prompt"] for r in toy_rows(64, seed=cfg["seed"] + 7)],
                               steps=cfg["warmup_steps"], batch_size=cfg["warmup_batch_size"], lr=cfg["warmup_lr"],
                               seed=cfg["seed"])
        print(f"format warm-up: loss {losses[0]:.3f} -> {losses[-1]:.3f} ({time.time() - t0:.0f}s)")
    start = out / "planner_start"
    model.save_pretrained(start)  # beta > 0: TRL rebuilds the reference model from this path
    tok.save_pretrained(start)
    before = evaluate(system, model, tok, eval_rows, cfg, "before")

    kw = grpo_kwargs(cfg["preset"], group_size=cfg["group_size"], max_turns=cfg["max_turns"],
                     queries_per_device=cfg["queries_per_step"], loss_norm=cfg["loss_norm"])
    kw.update(beta=cfg["beta"], temperature=cfg["temperature"])
    args = GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                      max_steps=cfg["max_steps"], logging_steps=cfg["logging_steps"], learning_rate=cfg["learning_rate"],
                      max_completion_length=cfg["max_completion_length"], gradient_checkpointing=False,
                      steps_per_generation=cfg["steps_per_generation"], seed=cfg["seed"], disable_tqdm=True,
                      lr_scheduler_type="constant", **kw)
    loss_norm = cfg["loss_norm"] or ("paper" if cfg["preset"] == "paper" else "token_mean")
    hook = {"name": "flowgrpo.broadcast", "norm": cfg["norm"], "eps": cfg["eps"], "loss_norm": loss_norm}
    trainer = build_trainer(GRPOTrainer, hooks=[hook], model=str(start), processing_class=tok,
                            reward_funcs=[get_reward("flowgrpo.outcome", judge=cfg["judge"])], args=args,
                            train_dataset=toy_dataset(cfg["train_queries"], seed=cfg["seed"]),
                            rollout_func=FlowRollout(system, cfg["group_size"]))
    t1 = time.time()
    trainer.train()
    train_s = time.time() - t1
    after = evaluate(system, trainer.accelerator.unwrap_model(trainer.model), tok, eval_rows, cfg, "after")

    history = [h for h in trainer.state.log_history if "step" in h]
    if trainer.accelerator.is_main_process:
        plot(history, before, after, out / "flowgrpo_agent.png")
        summary = {"before": before, "after": after, "train_seconds": train_s, "steps": cfg["max_steps"],
                   "config": cfg, "hook_totals": trainer.rewardkit_hooks[0].totals}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"success (sampled) {before['sampled']['success']:.3f} -> {after['sampled']['success']:.3f}; "
              f"greedy {before['greedy']['success']:.3f} -> {after['greedy']['success']:.3f}; "
              f"train {train_s:.0f}s; plot {out / 'flowgrpo_agent.png'}")
    end_run(trainer.accelerator)


if __name__ == "__main__":
    main()
