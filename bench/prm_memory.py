"""Benchmark: peak memory of PRM step scoring with and without the tokens-per-forward budget.

Prefix scoring forwards every step prefix ``steps[:k]``: for a chain of n steps that is n
sequences of up to the whole chain's length, a token count quadratic in n. Without a budget
(``max_batch_tokens=None``, the baseline) a forward holds ``batch_size`` such sequences whatever
their length; with the budget it holds at most ``max_batch_tokens`` padded tokens, and prefixes
are built batch by batch. Tagged scoring (one forward per chain) is measured the same way.

Each measurement runs in a fresh process: the model is loaded and warmed up, then the peak
resident memory added by one ``score`` call is read (``ru_maxrss`` after minus before). Scores
with and without the budget must agree (checked, <= 1e-5).

    python bench/prm_memory.py                                   # tiny offline PRM, 10/100/400 steps
    python bench/prm_memory.py --budget 4096 --trajectories 8 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    import resource

    import torch

    from rewardkit.prm import PrefixScorer, TaggedScorer
    from rewardkit.testing import tiny_model_dir

    torch.set_num_threads(1)
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from prm_scoring import trajectories

    cls = {"prefix": PrefixScorer, "tagged": TaggedScorer}[args.backend]
    budget = None if args.budget <= 0 else args.budget
    scorer = cls(args.model or str(tiny_model_dir("prm")), batch_size=args.batch_size, max_batch_tokens=budget,
                 max_length=args.max_length)
    scorer.score(["warm"], [["up"]])
    prompts, steps = trajectories(args.trajectories, args.steps)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from collections import Counter

    stats: Counter[str] = Counter()
    t = time.perf_counter()
    scores = scorer.score(prompts, steps, stats=stats)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": (peak - before) / 1024, "seconds": seconds, "forwards": stats["forwards"],
                      "max_forward_tokens": stats["max_forward_tokens"], "tokens": stats["tokens"],
                      "too_long": stats["too_long"], "scores": scores}))


def measure(args: argparse.Namespace, backend: str, steps: int, budget: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--backend", backend, "--steps-one", str(steps),
           "--budget", str(budget), "--trajectories", str(args.trajectories), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length)] + (["--model", args.model] if args.model else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="PRM path (default: the tiny token-classification PRM)")
    ap.add_argument("--trajectories", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16, help="rows per forward (both runs)")
    ap.add_argument("--budget", type=int, default=8192, help="max_batch_tokens of the budgeted run")
    ap.add_argument("--max-length", type=int, default=8192)
    ap.add_argument("--steps", default="10,100,400")
    ap.add_argument("--backends", default="prefix,tagged")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--steps-one", type=int, dest="steps_one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.steps = args.steps_one
        child(args)
        return
    print(f"PRM {args.model or 'tiny token-cls PRM'} | {args.trajectories} trajectories | batch_size {args.batch_size} "
          f"| budget max_batch_tokens={args.budget} vs baseline max_batch_tokens=None | one process per run, 1 thread")
    print(f"{'backend':>7} {'steps':>5} {'baseline MB':>11} {'budget MB':>9} {'ratio':>6} {'max tok/fwd b/B':>17} "
          f"{'forwards b/B':>13} {'s b/B':>11} {'max |diff|':>10}")
    for backend in args.backends.split(","):
        for k in [int(x) for x in args.steps.split(",")]:
            base = measure(args, backend, k, 0)
            bud = measure(args, backend, k, args.budget)
            diff = max((abs(x - y) for ra, rb in zip(base["scores"], bud["scores"]) if ra and rb
                        for x, y in zip(ra, rb)), default=0.0)
            if diff > 1e-5 or base["too_long"] or bud["too_long"]:
                raise SystemExit(f"{backend} at {k} steps: scores differ by {diff:.2e} or rows too long")
            ratio = base["peak_mb"] / max(bud["peak_mb"], 1e-9)
            print(f"{backend:>7} {k:>5} {base['peak_mb']:>11.1f} {bud['peak_mb']:>9.1f} {ratio:>5.1f}x "
                  f"{base['max_forward_tokens']:>8}/{bud['max_forward_tokens']:<8} "
                  f"{base['forwards']:>6}/{bud['forwards']:<6} {base['seconds']:>5.1f}/{bud['seconds']:<5.1f} "
                  f"{diff:>10.1e}")


if __name__ == "__main__":
    main()
