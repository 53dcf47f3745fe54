"""Regenerate rewardkit/data/arithmetic.jsonl: small word problems with gold answers and steps.

Deterministic (seed 0). Run: python scripts/make_arithmetic.py
"""

import json
import random
from pathlib import Path

NAMES = ["Tom", "Ann", "Sam", "Mia", "Leo", "Eva", "Ben", "Zoe", "Max", "Ivy"]
THINGS = ["apples", "pens", "books", "coins", "cards", "eggs", "stones", "cups"]


def problem(rng: random.Random, i: int) -> dict:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    kind = rng.choice(["add", "sub", "add2", "mul"])
    if kind == "add":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have?"
        steps = [f"{name} starts with {a} {thing}.", f"{a} + {b} = {a + b}."]
        ans = a + b
    elif kind == "sub":
        a = rng.randint(5, 19)
        b = rng.randint(1, a)
        q = f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?"
        steps = [f"{name} starts with {a} {thing}.", f"{a} - {b} = {a - b}."]
        ans = a - b
    elif kind == "add2":
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        q = f"{name} has {a} {thing}, finds {b} and buys {c}. How many {thing} now?"
        steps = [f"{a} + {b} = {a + b}.", f"{a + b} + {c} = {a + b + c}."]
        ans = a + b + c
    else:
        a, b = rng.randint(2, 5), rng.randint(2, 5)
        q = f"{name} has {a} bags with {b} {thing} each. How many {thing} in all?"
        steps = [f"There are {a} bags.", f"{a} * {b} = {a * b}."]
        ans = a * b
    return {"id": f"arith-{i:04d}", "kind": kind, "question": q, "steps": steps,
            "reasoning": "\n\n".join(steps), "solution": str(ans)}


def main() -> None:
    rng = random.Random(0)
    rows = [problem(rng, i) for i in range(512)]
    out = Path(__file__).resolve().parents[1] / "rewardkit" / "data" / "arithmetic.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
