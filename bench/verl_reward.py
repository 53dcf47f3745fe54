"""verl reward functions: ``compute_score`` per sample vs ``compute_score_batch`` (and the async one).

verl's ``naive`` reward manager calls the custom reward function once per response; the batch
function gets the whole batch in one call, so ``math.accuracy`` sends every answer to its worker pool
at once instead of one round trip per response. Scores N (default 4,096) distinct responses with
``math.accuracy`` + ``format.boxed`` (about a third wrong, a tenth without a box) through

* **per sample**: ``compute_score(data_source, solution_str, ground_truth, extra_info, spec=...)``
  in a loop, as the ``naive`` manager does (the baseline);
* **batch**: one ``compute_score_batch(...)`` call;
* **async**: ``compute_score_async`` for every response gathered on one event loop, as verl's
  reward loop runs an async function (concurrent calls merge into batches).

Checks that all three give the same scores, then prints responses/s and the ratio per-sample time /
batch time (same run, same process).

    python bench/verl_reward.py [--n 4096] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from rewardkit.integrations.verl import compute_score, compute_score_async, compute_score_batch, get_scorer

SPEC = {"math.accuracy": 1.0, "format.boxed": 0.1}


def make_rows(n: int, seed: int = 0) -> tuple[list[str], list[str], list[dict]]:
    rng = random.Random(seed)
    sols, golds, infos = [], [], []
    for k in range(n):
        a, b = k + 3, rng.randint(2, 97)
        gold = str(a * b) if k % 3 else f"\\frac{{{a}}}{{{b}}}"
        wrong = rng.random() < 0.35
        answer = (str(a * b + 1) if wrong else gold) if k % 3 else (f"\\frac{{{a + wrong}}}{{{b}}}")
        text = f"We compute {a} and {b} step by step.\nSo the result is "
        text += f"{answer}." if k % 10 == 0 else f"\\boxed{{{answer}}}."
        sols.append(text)
        golds.append(gold)
        infos.append({"question": f"What is {a} times {b}?", "index": k})
    return sols, golds, infos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    sols, golds, infos = make_rows(args.n)
    get_scorer(spec=SPEC)  # build once (verl does it on the first call of each worker), warm the pool
    compute_score_batch(["w"] * 8, sols[:8], golds[:8], infos[:8], spec=SPEC)

    async def gather() -> list[dict]:
        return await asyncio.gather(*[compute_score_async("arith", s, g, i, spec=SPEC)
                                      for s, g, i in zip(sols, golds, infos)])

    best = {"per_sample": float("inf"), "batch": float("inf"), "async": float("inf")}
    for _ in range(args.repeat):
        t = time.perf_counter()
        one = [compute_score("arith", s, g, i, spec=SPEC) for s, g, i in zip(sols, golds, infos)]
        best["per_sample"] = min(best["per_sample"], time.perf_counter() - t)
        t = time.perf_counter()
        batch = compute_score_batch(["arith"] * args.n, sols, golds, infos, spec=SPEC)
        best["batch"] = min(best["batch"], time.perf_counter() - t)
        t = time.perf_counter()
        async_rows = asyncio.run(gather())
        best["async"] = min(best["async"], time.perf_counter() - t)
        if not one == batch == async_rows:
            raise SystemExit("the three entry points disagree")
    mean = sum(r["score"] for r in batch) / args.n
    print(f"{args.n} responses, math.accuracy + format.boxed, mean score {mean:.3f}")
    for name, secs in best.items():
        print(f"  {name:<10} {secs:8.2f} s  {args.n / secs:9.0f} responses/s")
    print(f"ratio per-sample / batch: {best['per_sample'] / best['batch']:.1f}x; "
          f"per-sample / async: {best['per_sample'] / best['async']:.1f}x")


if __name__ == "__main__":
    main()
