"""The bundled toy set for PRM training: (question, thinking, response) records with ReasonFlux targets.

Built from rewardkit's bundled arithmetic problems: each problem appears with its correct steps,
with one arithmetic step corrupted (the error carried into the answer), and with an off-track
filler step inserted (a hedge or an unrelated remark, the answer still right). Step
targets are ``reasonflux.step`` (alignment + coherence with the offline MiniLM, quality from the
rule-based :func:`arithmetic_judge`) min-max scaled to [0, 1]. The trajectory target is the
response's correctness under ``math.accuracy`` — a stand-in for the template-guided reward, which
needs an expert LLM and a policy (use ``reasonflux.trajectory`` for real data).

Regenerate with ``python -m rewardkit_reasonflux.toy``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

TOY_PATH = Path(__file__).resolve().parent / "data" / "toy_prm.jsonl"
EQ = re.compile(r"(-?\d+)\s*([+\-*x×/])\s*(-?\d+)\s*=\s*(-?\d+)")


def arithmetic_judge(prompt: str, **_: Any) -> str:
    """A rule-based judge for the toy set: grades the ``Current step`` of the bundled quality prompt
    by checking its ``a op b = c`` equations: 9 when all hold, 1 when one fails; a step without
    equations gets 6 when it uses a number (it states a fact of the problem), else 2 (no progress)."""
    m = re.search(r"Current step:\n(.*?)\n\nFinal response:", prompt, re.S)
    step = m.group(1) if m else prompt
    eqs = EQ.findall(step)
    if not eqs:
        return "Score: 6" if re.search(r"\d", step) else "Score: 2"
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "x": lambda a, b: a * b,
           "×": lambda a, b: a * b, "/": lambda a, b: a / b if b else float("nan")}
    ok = all(ops[o](int(a), int(b)) == int(c) for a, o, b, c in eqs)
    return "Score: 9" if ok else "Score: 1"


def _corrupt(steps: list[str], solution: str, rng: random.Random) -> tuple[list[str], str] | None:
    idx = [i for i, s in enumerate(steps) if EQ.search(s)]
    if not idx:
        return None
    k = rng.choice(idx)
    m = list(EQ.finditer(steps[k]))[-1]
    wrong = str(int(m.group(4)) + rng.choice([-3, -2, -1, 1, 2, 3]))
    bad = steps[k][:m.start(4)] + wrong + steps[k][m.end(4):]
    new = steps[:k] + [bad] + [s.replace(m.group(4), wrong) for s in steps[k + 1:]]
    answer = wrong if k == len(steps) - 1 or m.group(4) == solution else None
    if answer is None:
        # carry the error into the final answer by shifting it as much as the step was off
        answer = str(int(solution) + int(wrong) - int(m.group(4))) if solution.lstrip("-").isdigit() else solution
    return new, answer


FILLERS = ("Wait, let me recheck my solution.", "Let me try again.", "Hmm, I am not sure about this.",
           "I like the color blue.", "This reminds me of a song.", "Maybe I should start over.")


def make_toy_records(n_problems: int = 96, seed: int = 0, encoder: Any = None) -> list[dict[str, Any]]:
    import rewardkit
    from rewardkit.data import load_arithmetic
    from rewardkit_reasonflux.judge import CallableBackend
    from rewardkit_reasonflux.training import build_targets

    rng = random.Random(seed)
    raw = []
    for row in load_arithmetic()[:n_problems]:
        steps = list(row["steps"])
        raw.append({"question": row["question"], "thinking": steps,
                    "response": f"The answer is \\boxed{{{row['solution']}}}.", "solution": row["solution"]})
        bad = _corrupt(steps, row["solution"], rng)
        if bad is not None:
            raw.append({"question": row["question"], "thinking": bad[0],
                        "response": f"The answer is \\boxed{{{bad[1]}}}.", "solution": row["solution"]})
        # the same two trajectories with an off-track step inserted: filler says nothing about correctness
        for thinking, answer in [(steps, row["solution"])] + ([bad] if bad is not None else []):
            at = rng.randrange(len(thinking) + 1)
            raw.append({"question": row["question"],
                        "thinking": thinking[:at] + [rng.choice(FILLERS)] + thinking[at:],
                        "response": f"The answer is \\boxed{{{answer}}}.", "solution": row["solution"]})
    acc = rewardkit.get_reward("math.accuracy")
    correct = acc([r["question"] for r in raw], [r["response"] for r in raw], solution=[r["solution"] for r in raw])
    for r, c in zip(raw, correct):
        r["trajectory_target"] = c
    step = rewardkit.get_reward("reasonflux.step", encoder=encoder, bank_size=0,
                                judge=CallableBackend(arithmetic_judge, name="arithmetic_judge"))
    records = build_targets(raw, step, None, transform="minmax")
    for r in records:
        r["step_targets"] = [round(v, 5) for v in r["step_targets"]]
    return records


def load_toy_records() -> list[dict[str, Any]]:
    """The bundled toy records (see the module docstring)."""
    with open(TOY_PATH, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def held_out_split(records: list[dict[str, Any]], fraction: float = 0.25) -> tuple[list[dict[str, Any]],
                                                                                 list[dict[str, Any]]]:
    """``(train, held_out)``: the last ``fraction`` of the questions (at least one), with every record of
    each, are held out, so no held-out problem is seen in training."""
    questions = list(dict.fromkeys(r["question"] for r in records))
    held = set(questions[-max(1, int(len(questions) * fraction)):])
    return [r for r in records if r["question"] not in held], [r for r in records if r["question"] in held]


if __name__ == "__main__":
    recs = make_toy_records()
    TOY_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(TOY_PATH, "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")
    print(f"wrote {len(recs)} records to {TOY_PATH}")
