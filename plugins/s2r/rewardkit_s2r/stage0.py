"""Stage 0: build S²R trajectories from a policy's own samples and a judge's verifications.

1. Sample ``K`` answers per question from the policy (paper: K=5, temperature 0.7, top_p 1).
2. Difficulty = number of wrong samples ``w``.
3. One *confirmative* verification per unique (question, answer) pair — the gold answer first,
   at most ``max_unique_answers`` — from the judge (an OpenAI-compatible server or a local model);
   verifications whose verdict disagrees with the truth, or that cannot decide, are dropped.
4. Trajectories per the released schedule (``select_train_data``): w=0 → 1 round (kept with
   p≈0.24), w=1 → 2 rounds (p=0.5), w∈{2,3} → 3 rounds (p=0.5), w=4 → 4 rounds (p=0.5); with
   fewer usable wrong answers the trajectory falls back to fewer rounds with p=1 (a question
   with no usable wrong answer, or no usable correct sample, is dropped). Wrong attempts are the
   model's own distinct wrong answers in random order; the last attempt is a correct sample.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardkit_s2r.grading import Grader
from rewardkit_s2r.parse import (
    DEFAULT_MARKERS,
    SYSTEM_PROMPT,
    VERDICT_CORRECT,
    VERDICT_INCORRECT,
    Markers,
    format_trajectory,
    last_boxed,
    normalize_answer,
)

JUDGE_SYSTEM = (
    "You are a math teacher. You will see a math problem and a student's final answer (not the solution). "
    "Check whether the answer is correct WITHOUT re-solving the problem step by step: use an alternative "
    "method such as substituting the answer back, reasoning in reverse, estimating, or checking bounds. "
    "Write the check in the first person, as the student re-checking their own answer, and end with exactly "
    f"one sentence: '{VERDICT_CORRECT}' or '{VERDICT_INCORRECT}'"
)

INCORRECT_PHRASES = ("is incorrect", "answer is wrong", "is not correct", "isn't correct", "is wrong",
                     "does not check out", "doesn't check out", "not consistent")
CORRECT_PHRASES = ("is correct", "answer checks out", "checks out", "is verified", "is consistent",
                   "is indeed correct", "is right")
UNDECIDED_PHRASES = ("cannot verify", "cannot be verified", "can't verify", "unable to verify")
STRIP_PHRASES = ("without solving the problem step by step", "without re-solving the problem step by step")


def policy_prompt(question: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
        [{"role": "user", "content": question}]


def judge_prompt(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"Problem: {question}\n\nStudent's final answer: {answer}"}]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def judge_verdict(text: str) -> bool | None:
    """Verdict of a judge's verification: True/False, or None when undecided (dropped).

    The explicit ``Therefore, the answer is correct/incorrect.`` wins; otherwise the last, then the
    second-last sentence is matched against phrase lists ("plausible" counts as correct)."""
    explicit = re.findall(r"Therefore, the answer is (correct|incorrect)\.", text)
    if explicit:
        return explicit[-1] == "correct"
    sentences = _sentences(text.replace("plausible", "correct"))
    for s in reversed(sentences[-2:]):
        low = s.lower()
        if any(p in low for p in UNDECIDED_PHRASES):
            return None
        if any(p in low for p in INCORRECT_PHRASES):
            return False
        if any(p in low for p in CORRECT_PHRASES):
            return True
    return None


def clean_verification(text: str, verdict: bool) -> str:
    """Strip prompt-leak phrases and make the text end with the exact verdict sentence."""
    out = text.strip()
    for p in STRIP_PHRASES:
        out = out.replace(p, "").replace(p.capitalize(), "")
    out = out.replace("original answer", "answer").replace("plausible", "correct")
    out = re.sub(r"Therefore, the answer is (correct|incorrect|cannot be verified)\.\s*$", "", out).rstrip()
    out = re.sub(r"[ \t]{2,}", " ", out)
    return f"{out} {VERDICT_CORRECT if verdict else VERDICT_INCORRECT}".strip()


def truncate_at_markers(sample: str, markers: Markers = DEFAULT_MARKERS) -> str:
    """A policy sample used as an attempt must not carry its own verification."""
    m = re.search(("(?m)^" if markers.line_start else "") + re.escape(markers.verify), sample)
    return (sample[:m.start()] if m else sample).strip()


@dataclass
class Stage0Config:
    k: int = 5
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    judge_temperature: float = 0.1
    judge_max_new_tokens: int = 256
    max_unique_answers: int = 5
    # rounds by number of wrong samples (K=5) and the probability of keeping such a trajectory
    rounds_for_wrong: dict[int, int] = field(default_factory=lambda: {0: 1, 1: 2, 2: 3, 3: 3, 4: 4})
    keep_prob: dict[int, float] = field(default_factory=lambda: {0: 0.76 * 0.45 * 0.7, 1: 0.5, 2: 0.5,
                                                                   3: 0.5, 4: 0.5})
    downsample: bool = True
    seed: int = 0


@dataclass
class Stage0Result:
    records: list[dict[str, Any]]
    stats: dict[str, Any]


def build_trajectories(rows: Sequence[dict[str, Any]], policy: Any, judge: Any, config: Stage0Config | None = None,
                       *, question_key: str = "question", gold_key: str = "solution",
                       markers: Markers = DEFAULT_MARKERS, grader: Grader | None = None,
                       system_prompt: str | None = SYSTEM_PROMPT, progress: bool = False) -> Stage0Result:
    """Run stage 0 on ``rows`` (dicts with a question and a gold answer/solution)."""
    cfg = config or Stage0Config()
    grader = grader or Grader()
    rng = random.Random(cfg.seed)
    questions = [str(r[question_key]) for r in rows]
    golds = [r[gold_key] for r in rows]
    samples = policy.generate([policy_prompt(q, system_prompt) for q in questions], cfg.k,
                              temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    stats: Counter[str] = Counter()
    per_q: list[dict[str, Any] | None] = []
    judge_requests: list[tuple[int, str]] = []
    for qi, (gold, outs) in enumerate(zip(golds, samples)):
        gold_ans = Grader.gold_answer(gold)
        attempts = [truncate_at_markers(s, markers) for s in outs]
        answers = [normalize_answer(last_boxed(a)) for a in attempts]
        correct = [grader.correct(a, gold) for a in answers]
        if any(c is None for c in correct):  # math-verify could not decide a grade: no trajectory from it
            stats["questions_ungraded"] += 1
            per_q.append(None)
            continue
        stats["samples"] += len(outs)
        stats["samples_correct"] += sum(correct)
        stats["samples_without_answer"] += sum(a is None for a in answers)
        unique: list[str] = [gold_ans] if gold_ans else []
        for a in answers:
            if a is not None and a not in unique and len(unique) < cfg.max_unique_answers:
                unique.append(a)
        for a in unique:
            judge_requests.append((qi, a))
        per_q.append({"attempts": attempts, "answers": answers, "correct": correct, "unique": unique,
                      "wrong": sum(not c for c in correct)})
    verifs = judge.generate([judge_prompt(questions[qi], a) for qi, a in judge_requests], 1,
                            temperature=cfg.judge_temperature, top_p=1.0, max_new_tokens=cfg.judge_max_new_tokens)
    usable: dict[tuple[int, str], str] = {}
    for (qi, a), texts in zip(judge_requests, verifs):
        text = texts[0]
        truth = grader.correct(a, golds[qi])
        verdict = judge_verdict(text)
        stats["verifications"] += 1
        if truth is None:
            stats["verifications_ungraded"] += 1
            continue
        stats["verifications_truth_correct"] += truth
        if verdict is None:
            stats["verifications_undecided"] += 1
            continue
        if verdict != truth:
            stats["verifications_disagree"] += 1
            continue
        stats["verifications_agree"] += 1
        usable[(qi, a)] = clean_verification(text, verdict)

    records = []
    max_w = max(cfg.rounds_for_wrong)
    for qi, info in enumerate(per_q):
        if info is None:
            continue
        w = info["wrong"]
        stats[f"difficulty_{w}"] += 1
        good = [i for i, c in enumerate(info["correct"]) if c and (qi, info["answers"][i]) in usable]
        if not good:
            stats["dropped_no_usable_correct"] += 1
            continue
        wrong_by_answer: dict[str, list[int]] = {}
        for i, (a, c) in enumerate(zip(info["answers"], info["correct"])):
            if not c and a is not None and (qi, a) in usable:
                wrong_by_answer.setdefault(a, []).append(i)
        target = cfg.rounds_for_wrong[min(w, max_w)]
        n_wrong = len(wrong_by_answer)
        if target - 1 <= n_wrong:
            rounds, p = target, cfg.keep_prob.get(min(w, max_w), 1.0)
        elif n_wrong >= 1:
            rounds, p = n_wrong + 1, 1.0
        else:
            stats["dropped_no_usable_wrong"] += 1
            continue
        if cfg.downsample and rng.random() >= p:
            stats["dropped_downsampled"] += 1
            continue
        wrong_answers = rng.sample(sorted(wrong_by_answer), rounds - 1)
        picks = [rng.choice(wrong_by_answer[a]) for a in wrong_answers] + [rng.choice(good)]
        attempts = [info["attempts"][i] for i in picks]
        verifications = [usable[(qi, info["answers"][i])] for i in picks]
        text = format_trajectory(attempts, verifications, markers)
        stats[f"rounds_{rounds}"] += 1
        records.append({"question": questions[qi], "solution": golds[qi], "text": text, "rounds": rounds,
                        "difficulty": w, "answers": [info["answers"][i] for i in picks]})
    n_q = len(rows)
    summary: dict[str, Any] = dict(sorted(stats.items()))
    summary["questions"] = n_q
    summary["trajectories"] = len(records)
    summary["sample_accuracy"] = stats["samples_correct"] / max(1, stats["samples"])
    summary["judge_agreement"] = stats["verifications_agree"] / max(1, stats["verifications"])
    return Stage0Result(records, summary)


# -- an offline stand-in for the strong judge (used by the demo pipeline) ----------------------

class ScriptedArithmeticJudge:
    """A rule-based "teacher" for the bundled arithmetic set, to run stage 0 without an API.

    It reads the problem and the student's answer from a :func:`judge_prompt`, checks the answer
    against the known gold answer by working backwards, and writes a confirmative first-person
    check ending in the verdict sentence. With ``error_rate`` it flips verdicts at random, so the
    agreement filter has something to drop. Serve it with :func:`rewardkit_s2r.backends.serve`.
    """

    def __init__(self, gold_by_question: dict[str, str], error_rate: float = 0.1, seed: int = 0) -> None:
        self.gold = {q.strip(): str(g) for q, g in gold_by_question.items()}
        self.error_rate = error_rate
        self.rng = random.Random(seed)

    def __call__(self, messages: list[dict[str, Any]], n: int, temperature: float, top_p: float,
                 max_tokens: int) -> list[str]:
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        m = re.search(r"Problem: (.*?)\n\nStudent's final answer: (.*)$", user, re.S)
        if not m:
            return ["I cannot verify this answer."] * n
        question, answer = m.group(1).strip(), m.group(2).strip()
        gold = self.gold.get(question)
        if gold is None:
            return ["I cannot verify this answer."] * n
        nums = re.findall(r"\d+", question)
        out = []
        for _ in range(n):
            ok = normalize_answer(answer) == normalize_answer(gold)
            if self.rng.random() < self.error_rate:
                ok = not ok
            given = ", ".join(nums) if nums else "the given numbers"
            if ok:
                body = f"Working backwards from {answer} gives back {given}, so it fits."
            else:
                body = f"Working backwards from {answer} does not give back {given}, so it does not fit."
            out.append(f"{body} {VERDICT_CORRECT if ok else VERDICT_INCORRECT}")
        return out

    def generate(self, prompts: Sequence[Any], n: int = 1, **kwargs: Any) -> list[list[str]]:
        return [self(p if isinstance(p, list) else [{"role": "user", "content": p}], n, 0.0, 1.0, 0) for p in prompts]


# -- CLI: rewardkit s2r-data -------------------------------------------------------------------

def configure_cli(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="questions: .jsonl/.json/.parquet with question + gold columns "
                                  "(default: the bundled arithmetic set)")
    p.add_argument("--question-column", default="question")
    p.add_argument("--gold-column", default="solution")
    p.add_argument("--limit", type=int, help="use the first N questions")
    p.add_argument("--policy", required=True, help="policy: a model path, or an OpenAI-compatible base URL")
    p.add_argument("--policy-model", default="default", help="model name sent to a policy server")
    p.add_argument("--judge", required=True,
                   help="judge: an OpenAI-compatible base URL, a local model path, or 'scripted-arithmetic' "
                        "(offline rule-based teacher for the bundled set)")
    p.add_argument("--judge-model", default="default", help="model name sent to a judge server")
    p.add_argument("--api-key", default=None, help="bearer token for the servers (default: $OPENAI_API_KEY)")
    p.add_argument("-k", type=int, default=5, help="samples per question (paper: 5)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--judge-max-new-tokens", type=int, default=256)
    p.add_argument("--no-downsample", action="store_true", help="keep every trajectory (no keep probabilities)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="write the trajectories here (JSONL)")


def run_cli(args: argparse.Namespace) -> int:
    import os

    from rewardkit.data import load_arithmetic, load_records
    from rewardkit_s2r.backends import get_backend

    rows = load_records(args.data) if args.data else load_arithmetic()
    if args.limit:
        rows = rows[: args.limit]
    if rows and (args.question_column not in rows[0] or args.gold_column not in rows[0]):
        print(f"error: the data needs columns {args.question_column!r} and {args.gold_column!r}; "
              f"it has {sorted(rows[0])}", file=sys.stderr)
        return 2
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    policy = get_backend(args.policy, model=args.policy_model, api_key=api_key, seed=args.seed)
    if args.judge == "scripted-arithmetic":
        judge = ScriptedArithmeticJudge({r[args.question_column]: r[args.gold_column] for r in rows}, seed=args.seed)
    else:
        judge = get_backend(args.judge, model=args.judge_model, api_key=api_key, seed=args.seed)
    cfg = Stage0Config(k=args.k, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                       judge_max_new_tokens=args.judge_max_new_tokens, downsample=not args.no_downsample,
                       seed=args.seed)
    result = build_trajectories(rows, policy, judge, cfg, question_key=args.question_column,
                                gold_key=args.gold_column)
    with open(args.output, "w", encoding="utf-8") as fh:
        for r in result.records:
            fh.write(json.dumps(r) + "\n")
    print(json.dumps(result.stats, indent=2))
    print(f"wrote {len(result.records)} trajectories to {args.output}", file=sys.stderr)
    return 0
