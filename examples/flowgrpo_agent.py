"""Flow-GRPO (AgentFlow, arXiv 2510.05592) on a toy tool task with a tiny planner.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/flowgrpo_agent.py --config examples/configs/flowgrpo_agent.yaml

The planner (the only trained module) must call ``lookup`` (prices live only in local documents)
before ``calculator``; executor, verifier and generator are frozen Python rules sharing the
structured memory. It prints the held-out success rate before and after training and writes the run
report (``metrics.jsonl``, ``summary.json`` with both success rates, ``rewards.png``) into
``output_dir``. Arguments are this script's (below) and every ``GRPOConfig`` field; the Flow-GRPO
preset (``rewardkit_flowgrpo.grpo_kwargs``) sets GRPOConfig's defaults, then the YAML file, then flags.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class FlowArguments:
    model: str = "tiny"                # 'tiny' (offline tiny Llama), 'smollm2', a Hub id or a local path
    torch_threads: int = 1
    format_warmup_steps: int = 200     # teaches "Tool: <name>" with a random tool: the format, no policy
    format_warmup_batch_size: int = 16
    format_warmup_lr: float = 3e-3
    max_turns: int = 3                 # T_max
    group_size: int = 8                # G trajectories per query
    judge: str = "exact"               # exact | math | llm
    on_tool_error: str = "end"         # end | continue (AgentFlow's code)
    preset: str = "paper"              # paper | code (see docs/methods/flowgrpo.md)
    norm: str = "trajectory"           # trajectory (paper Eq. 7) | turn_pooled (released code)
    eps: float | None = None           # None: 0 for trajectory, 1e-6 for turn_pooled
    loss_norm: str | None = None       # None: from the preset (paper -> paper, code -> token_mean)
    train_queries: int = 256
    queries_per_step: int = 2
    eval_queries: int = 48
    eval_group_size: int = 4


def success_rates(system, model, tok, rows, args: FlowArguments, temperature: float, max_len: int) -> dict[str, Any]:
    from rewardkit_flowgrpo import HFPlanner
    from rewardkit_flowgrpo.toy import success_rate

    sampled = HFPlanner(model, tok, max_new_tokens=max_len, temperature=temperature)
    return {"sampled": success_rate(system, sampled, rows, group_size=args.eval_group_size),
            "greedy": success_rate(system, HFPlanner(model, tok, max_new_tokens=max_len, do_sample=False), rows)}


def main(args: FlowArguments, training_args) -> dict[str, Any]:
    import torch
    from rewardkit_flowgrpo import FlowRollout
    from rewardkit_flowgrpo.toy import format_warmup, toy_dataset, toy_rows, toy_system
    from run_report import write_run_report
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import GRPOTrainer

    from rewardkit import get_reward
    from rewardkit.testing import resolve_model
    from rewardkit.trl import build_trainer, end_run, launch_state

    torch.set_num_threads(args.torch_threads)
    state = launch_state(training_args.use_cpu)
    set_seed(training_args.seed)
    out, seed = Path(training_args.output_dir), training_args.seed
    base, _ = resolve_model(args.model, state, seed=seed)
    tok, model = AutoTokenizer.from_pretrained(base), AutoModelForCausalLM.from_pretrained(base)
    system = toy_system(tok, max_turns=args.max_turns, on_tool_error=args.on_tool_error)
    eval_rows = toy_rows(args.eval_queries, seed=seed + 1000)
    if args.format_warmup_steps:
        losses = format_warmup(model, tok, system, [r["prompt"] for r in toy_rows(64, seed=seed + 7)],
                               steps=args.format_warmup_steps, batch_size=args.format_warmup_batch_size,
                               lr=args.format_warmup_lr, seed=seed)
        print(f"format warm-up: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    model.save_pretrained(out / "planner_start")  # beta > 0: TRL rebuilds the reference model from this path
    tok.save_pretrained(out / "planner_start")
    rates = (training_args.temperature, training_args.max_completion_length)
    before = success_rates(system, model, tok, eval_rows, args, *rates)

    loss_norm = args.loss_norm or ("paper" if args.preset == "paper" else "token_mean")
    hook = {"name": "flowgrpo.broadcast", "norm": args.norm, "eps": args.eps, "loss_norm": loss_norm}
    trainer = build_trainer(GRPOTrainer, hooks=[hook], model=str(out / "planner_start"), processing_class=tok,
                            reward_funcs=[get_reward("flowgrpo.outcome", judge=args.judge)], args=training_args,
                            train_dataset=toy_dataset(args.train_queries, seed=seed),
                            rollout_func=FlowRollout(system, args.group_size))
    trainer.train()
    after = success_rates(system, trainer.accelerator.unwrap_model(trainer.model), tok, eval_rows, args, *rates)
    summary: dict[str, Any] = {}
    if state.is_main_process:
        summary = write_run_report(trainer.state.log_history, ["flowgrpo.outcome"], out,
                                   title="Flow-GRPO: trajectory outcome during training", total_label="reward")
        summary.update(before=before, after=after, hook_totals=trainer.rewardkit_hooks[0].totals, args=asdict(args))
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        for mode in ("sampled", "greedy"):
            print(f"held-out success ({mode}): {before[mode]['success']:.3f} -> {after[mode]['success']:.3f}")
    end_run(state)
    return summary


def parse_arguments(argv: list[str] | None = None) -> tuple[FlowArguments, Any]:
    """Machine defaults, then the Flow-GRPO preset of the chosen group size and turns, then YAML, then flags."""
    from rewardkit_flowgrpo import grpo_kwargs
    from trl import GRPOConfig, TrlParser

    from rewardkit.trl import machine_defaults

    args, _ = TrlParser((FlowArguments,), add_help=False).parse_args_and_config(argv, return_remaining_strings=True)
    parser = TrlParser((FlowArguments, GRPOConfig))
    parser.set_defaults(**machine_defaults(), **grpo_kwargs(args.preset, group_size=args.group_size,
                        max_turns=args.max_turns, queries_per_device=args.queries_per_step, loss_norm=args.loss_norm))
    return parser.parse_args_and_config(argv)


if __name__ == "__main__":
    main(*parse_arguments())
