"""math.accuracy answer checking: isolated (worker pool with deadlines) vs in-thread.

Generates N (default 2,000) gold/completion pairs in a realistic mix of formats (integers, GSM8K
``####`` answers with thousands separators, fractions, radicals, money, percentages, intervals,
tuples, answer lists, expressions in n, choice letters; about a third wrong), every pair distinct
so no cache or de-duplication helps either side, then times

* **in-thread** (the baseline): read the gold, pick the final answer and run math-verify's
  parse + verify in the calling thread, one row after another - what ``math.accuracy`` did
  before, minus its signal timeouts;
* **pool**: one ``math.accuracy`` call on the whole batch, the checks running in the shared
  worker pool (default size, then one worker) with a per-answer deadline.

Prints answers/s of each and the ratio pool time / in-thread time (<= 1.3 is the target; below 1
the workers run in parallel).

    python bench/answer_check.py [--n 2000] [--workers N] [--repeat 2]
"""

from __future__ import annotations

import argparse
import random
import time

import rewardkit
from rewardkit.answer_check import Job, check_here, default_workers, prepare, read_gold


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for k in range(n):
        a, b = k + 2, rng.randint(2, 97)
        wrong = rng.random() < 0.35
        kind = k % 10
        if kind == 0:
            gold, ans = str(a), str(a + 1 if wrong else a)
        elif kind == 1:
            v = a * 1000 + b
            gold, ans = f"{v:,}", f"{v + 10 if wrong else v}"
            pairs.append((f"Step one.\n#### {gold}", f"So in total {ans}.\n#### {ans}"))
            continue
        elif kind == 2:
            gold, ans = f"\\dfrac{{{a}}}{{{a + b}}}", f"\\frac{{{a + b if wrong else a}}}{{{a if wrong else a + b}}}"
        elif kind == 3:
            gold, ans = f"{a}\\sqrt{b}", f"{a}\\sqrt{{{b + 1 if wrong else b}}}"
        elif kind == 4:
            gold, ans = f"\\${a}.{b:02d}", f"{a}.{b + 1 if wrong else b:02d}"
        elif kind == 5:
            gold, ans = f"{a}\\%", f"{a + 1 if wrong else a}\\%"
        elif kind == 6:
            gold, ans = f"[{a},{a + b})", f"[{a}, {a + b}]" if wrong else f"[{a}, {a + b})"
        elif kind == 7:
            gold, ans = f"({a},{b})", f"({b},{a})" if wrong else f"({a}, {b})"
        elif kind == 8:
            gold, ans = f"n^2+{a}n", f"n(n+{a + 1 if wrong else a})"
        else:
            letter = "ABCDE"[k % 5]
            gold, ans = f"\\text{{({letter})}}", "ABCDE"[(k + wrong) % 5]
        pairs.append((gold, f"Some reasoning about step {k}.\nThe final answer is $\\boxed{{{ans}}}$."))
    return pairs


def in_thread(pairs: list[tuple[str, str]]) -> list[float | None]:
    out: list[float | None] = []
    for gold, text in pairs:
        parsed = read_gold(gold)
        job = None if parsed is None else prepare(parsed, text)
        out.append(check_here(job) if isinstance(job, Job) else job)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    pairs = make_pairs(args.n)
    prompts, texts, golds = ["q"] * len(pairs), [t for _, t in pairs], [g for g, _ in pairs]
    rewards = {w: rewardkit.get_reward("math.accuracy", workers=w) for w in sorted({args.workers, 1}, reverse=True)}
    for reward in rewards.values():
        reward(["q"], ["\\boxed{1}"], solution=["1"])  # start the workers outside the timing
    best: dict[str, float] = {}
    base: list[float | None] = []
    # best of --repeat rounds, the modes interleaved: on a shared machine the load changes by the minute
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        base = in_thread(pairs)
        best["in-thread"] = min(best.get("in-thread", float("inf")), time.perf_counter() - t0)
        for workers, reward in rewards.items():
            t0 = time.perf_counter()
            values = reward(prompts, texts, solution=golds)
            best[workers] = min(best.get(workers, float("inf")), time.perf_counter() - t0)
            assert values == base, "pool and in-thread checking disagree"
    t_base = best["in-thread"]
    print(f"{len(pairs)} answers, {sum(v == 1.0 for v in base)} correct; best of {args.repeat}")
    print(f"in-thread (baseline):    {len(pairs) / t_base:7.0f} answers/s  ({t_base:.2f} s)")
    for workers in rewards:
        t = best[workers]
        print(f"pool, {workers} worker(s):       {len(pairs) / t:7.0f} answers/s  ({t:.2f} s)  "
              f"ratio pool / in-thread = {t / t_base:.2f}x")

if __name__ == "__main__":
    main()
