"""Overhead of rewardkit's protocol layer: rule rewards called raw vs through a RewardSet.

Baseline ("raw"): the underlying functions called directly, as a TRL user would pass them —
TRL's ``think_format_reward`` and soft overlong punishment, and the boxed-answer check.
Candidate: ``compose({"format.think", "format.boxed", "length.overlong"})`` called exactly the way
GRPOTrainer calls reward functions (keyword arguments, extra columns, ``log_metric``).
Target: ratio <= 1.05. Times are CPU time of this process (``time.process_time``), so other
work on a shared machine does not land on either side.

    python bench/compose_overhead.py [--n 10000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from trl.rewards import get_soft_overlong_punishment, think_format_reward

from rewardkit import compose
from rewardkit.builtin_rewards import has_boxed_answer


def make_batch(n: int, seed: int = 0):
    rng = random.Random(seed)
    words = ["step", "so", "the", "answer", "is", "we", "add", "3", "4", "+", "=", "7", "\n\n"]
    completions, ids = [], []
    for _ in range(n):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))
        if rng.random() < 0.5:
            body = f"<think>\n{body}\n</think>\nThe answer is \\boxed{{{rng.randint(0, 99)}}}."
        completions.append([{"role": "assistant", "content": body}])
        ids.append([1] * rng.randint(10, 600))
    prompts = [[{"role": "user", "content": "q"}]] * n
    return prompts, completions, ids


def raw_boxed(completions, **kwargs):
    return [has_boxed_answer(c[0]["content"]) for c in completions]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    prompts, completions, ids = make_batch(args.n)
    solution = ["7"] * args.n
    overlong = get_soft_overlong_punishment(512, 128)
    raw = [think_format_reward, raw_boxed, overlong]
    rs = compose({"format.think": 1.0, "format.boxed": 1.0,
                  "length.overlong": {"weight": 1.0, "max_completion_len": 512, "soft_punish_cache": 128}})
    metrics: dict[str, float] = {}

    def log_metric(name, value):
        metrics[name] = value

    def run(funcs, extra):
        # like timeit, the garbage collector is paused while timing: its pauses land on whichever
        # side happens to allocate the object that triggers them, which is noise, not overhead
        gc.collect()
        gc.disable()
        try:
            t0 = time.process_time()
            out = [f(prompts=prompts, completions=completions, completion_ids=ids, solution=solution, **extra)
                   for f in funcs]
            return time.process_time() - t0, out
        finally:
            gc.enable()

    # identical values first: the comparison is only meaningful for the same rewards
    _, raw_out = run(raw, {})
    _, rk_out = run(rs.funcs, {"log_metric": log_metric, "log_extra": None, "trainer_state": None})
    assert raw_out == rk_out, "raw and composed rewards disagree"
    raw_t, rk_t = [], []
    for _ in range(args.repeats):  # interleaved so drift in machine load hits both alike
        raw_t.append(run(raw, {})[0])
        rk_t.append(run(rs.funcs, {"log_metric": log_metric, "log_extra": None, "trainer_state": None})[0])
    r, k = statistics.median(raw_t), statistics.median(rk_t)
    print(f"completions: {args.n}, rewards: {rs.names}")
    print(f"raw TRL-style functions : {r * 1e3:8.2f} ms (median CPU time of {args.repeats})")
    print(f"rewardkit RewardSet     : {k * 1e3:8.2f} ms")
    print(f"ratio (RewardSet / raw) : {k / r:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
