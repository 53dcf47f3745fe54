"""S²R trajectory parsing throughput: rewardkit_s2r.parse vs a regex-only baseline.

Generates N (default 20,000) S²R trajectories of 1-4 rounds (boxed answers, nested braces,
verdict sentences, verifications without a verdict, stray "Wait,"/"Let me try again." inside
attempts), then times

* ``rewardkit_s2r.parse.parse`` — spans, the stray-marker rule, brace-matched boxed answers with
  normalisation, the released verdict rule with keyword fallback and default;
* the baseline ``rewardkit_s2r.parse.regex_parse`` — ``re.split`` on the markers anywhere, the last
  flat ``\\boxed{}`` and the last verdict sentence per part (no spans, no nesting, no stray rule).

Prints trajectories/s of both and the ratio (parse / regex), plus how often the regex baseline
disagrees with the parser on the answers and verdicts.

    python bench/s2r_parse.py [--n 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import time

from rewardkit_s2r.parse import format_trajectory, parse, regex_parse


def make_trajectories(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        rounds = rng.randint(1, 4)
        attempts, verifs = [], []
        for j in range(rounds):
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            steps = " ".join(f"Step {k}: {rng.randint(1, 99)} + {rng.randint(1, 99)} = {rng.randint(1, 200)}."
                             for k in range(rng.randint(1, 6)))
            if rng.random() < 0.1:
                steps += " Wait, that is not right. Let me try again. " + steps
            ans = f"\\frac{{{a}}}{{{b}}}" if rng.random() < 0.3 else str(a + b)
            attempts.append(f"{steps} So the answer is $\\boxed{{{ans}}}$.")
            last = j == rounds - 1
            verdict = "correct" if last else "incorrect"
            body = f"Substituting {ans} back into the problem gives {rng.randint(1, 200)}."
            r = rng.random()
            if r < 0.8:
                verifs.append(f"{body} Therefore, the answer is {verdict}.")
            elif r < 0.9:
                verifs.append(f"{body} The answer {ans} is {'indeed right' if last else 'incorrect'}.")
            else:
                verifs.append(body)
        if rng.random() < 0.05:
            verifs = verifs[:-1]  # truncated before the last verification
        out.append(format_trajectory(attempts, verifs))
    return out


def time_it(fn, texts, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            fn(t)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    texts = make_trajectories(args.n)
    chars = sum(map(len, texts))
    t_parse = time_it(parse, texts, args.repeat)
    t_regex = time_it(regex_parse, texts, args.repeat)
    # agreement on (answer, verdict) sequences
    disagree = 0
    for t in texts:
        ours = [(a.kind, a.answer if a.kind == "solve" else ("correct" if a.verdict else "incorrect"))
                for a in parse(t).actions]
        base = [(k, v) for k, v in regex_parse(t)]
        disagree += ours != base
    print(f"trajectories: {args.n}  (mean {chars / args.n:.0f} chars, best of {args.repeat})")
    print(f"rewardkit_s2r.parse : {args.n / t_parse:12,.0f} trajectories/s")
    print(f"regex-only baseline : {args.n / t_regex:12,.0f} trajectories/s")
    print(f"ratio parse/regex   : {t_regex / t_parse:.2f}x the baseline's throughput")
    print(f"regex baseline disagrees with the parser on {disagree / args.n:.1%} of trajectories "
          "(stray markers, nested braces, verdict fallbacks)")


if __name__ == "__main__":
    main()
