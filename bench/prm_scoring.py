"""Benchmark: PRM step scoring, one forward per trajectory (``tagged``) vs one per prefix (``prefix``).

Same PRM, same data, same batch size; both backends must give the same scores (checked, <= 1e-4).
Prints the speed-up of ``tagged`` over ``prefix`` (baseline) at 16 steps per trajectory (target
>= 10x) and how the ratio grows with the number of steps (4, 8, 16, 32).

    python bench/prm_scoring.py                       # tiny offline PRM from rewardkit.testing
    python bench/prm_scoring.py --model PATH --trajectories 64 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import torch

# Qwen2.5-Math-PRM's input layout: a system turn, the question as the user turn, steps in the answer
CHAT = ("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
        "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")


def trajectories(n: int, steps: int) -> tuple[list[str], list[list[str]]]:
    """``n`` trajectories of exactly ``steps`` steps, built from the bundled toy step data."""
    from rewardkit.data.steps import load_toy_steps

    pool = [s for r in load_toy_steps() for s in r["completions"]]
    rows = load_toy_steps()
    prompts, out, k = [], [], 0
    for i in range(n):
        prompts.append(rows[i % len(rows)]["prompt"])
        out.append([pool[(k + j) % len(pool)] for j in range(steps)])
        k += steps
    return prompts, out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="PRM path (default: the tiny token-classification PRM)")
    ap.add_argument("--trajectories", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", default="4,8,16,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chat", action="store_true",
                    help="lay the prompt out like Qwen2.5-Math-PRM (system + user turn in a chat template)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from rewardkit.prm import PrefixScorer, TaggedScorer
    from rewardkit.testing import tiny_model_dir

    path = args.model or str(tiny_model_dir("prm"))
    template = CHAT if args.chat else "{prompt}\n"
    tagged = TaggedScorer(path, batch_size=args.batch_size, max_batch_tokens=None, prompt_template=template)
    prefix = PrefixScorer(path, batch_size=args.batch_size, max_batch_tokens=None, prompt_template=template)
    tagged.score(["warm"], [["up"]])
    prefix.score(["warm"], [["up"]])
    print(f"PRM {path} | {'chat' if args.chat else 'plain'} prompt layout "
          f"| {args.trajectories} trajectories | batch {args.batch_size} | min of {args.repeats} runs "
          f"| torch threads {torch.get_num_threads()}")
    print(f"{'steps':>5} {'tagged s':>9} {'prefix s':>9} {'forwards t/p':>13} {'max |diff|':>10} {'speed-up':>9}")
    ratios = {}
    for k in [int(x) for x in args.steps.split(",")]:
        prompts, steps = trajectories(args.trajectories, k)
        # interleaved, min over repeats: robust to other load on a shared machine
        t_tag = t_pre = float("inf")
        for _ in range(args.repeats):
            t, a = timed(lambda p=prompts, s=steps: tagged.score(p, s), 1)
            t_tag = min(t_tag, t)
            t, b = timed(lambda p=prompts, s=steps: prefix.score(p, s), 1)
            t_pre = min(t_pre, t)
        diff = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
        if diff > 1e-4:
            raise SystemExit(f"tagged and prefix scores differ by {diff:.2e} at {k} steps")
        n_tag = -(-args.trajectories // args.batch_size)
        n_pre = -(-args.trajectories * k // args.batch_size)
        ratios[k] = t_pre / t_tag
        print(f"{k:>5} {t_tag:>9.3f} {t_pre:>9.3f} {n_tag:>6}/{n_pre:<6} {diff:>10.1e} {ratios[k]:>8.1f}x")
    if 16 in ratios:
        verdict = "meets" if ratios[16] >= 10 else "misses"
        print(f"\ntagged vs prefix (baseline) at 16 steps: {ratios[16]:.1f}x ({verdict} the >= 10x target)")
    print("ratio by steps: " + ", ".join(f"{k}: {r:.1f}x" for k, r in ratios.items()))


if __name__ == "__main__":
    main()
