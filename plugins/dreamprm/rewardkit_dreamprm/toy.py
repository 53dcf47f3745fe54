"""A synthetic multi-domain arithmetic set with quality imbalance: DreamPRM's claim in miniature.

Every domain is a family of two-step arithmetic chains ("Step 1: 7 + 5 = 12." "Step 2: 12 - 3 = 9."
"Final answer: 9") written by a noisy policy that slips on a step with probability ``slip``: it
writes the result with the wrong sign (``slip_kind="sign"``, "7 + 5 = -12") or with an extra
hundred (``"carry"``), and later steps compute on the wrong value. The slips are easy for a tiny
PRM to learn to spot (a tiny randomly initialised LM cannot learn to check "7 + 5 = 13" in a few
hundred CPU steps), which keeps the experiment about the weighting, not about arithmetic. A prefix's soft label is its exact
Monte-Carlo value, the chance a continuation from it ends correct: 0 once a slip happened, else
``(1 - slip) ** steps_left``. The ``corrupted`` domains get a fraction ``flip`` of their step labels
flipped (``y -> 1 - y``): noisy supervision the upper level should learn to down-weight.

The meta set and the Best-of-N evaluation set are clean. By default the meta chains keep the policy's
own success rate (``meta_balanced=False``): with the default ``slip=0.3`` that rate and every
domain's mean label are all about 0.5, so flipping labels does not change a domain's base rate and the
upper level has to judge domains by what their labels teach, not by calibration. (A 50/50 meta set
with a policy whose success rate is far from 0.5 rewards whichever domain's labels sit closest to
0.5, which is the flipped one.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rewardkit_dreamprm.steps import Chain
from rewardkit_dreamprm.trainer import LowerExample, MetaExample

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
# each domain: the two operators of its chain and the operand ranges
# the default four share one skill (spotting a slipped result); "mul" is there for heterogeneous runs
DOMAINS: dict[str, tuple[str, str]] = {"add": ("+", "+"), "sub": ("-", "-"), "mix": ("+", "-"), "mix2": ("-", "+"),
                                       "mul": ("*", "+")}
DEFAULT_DOMAINS = ("add", "sub", "mix", "mix2")


@dataclass
class ToyProblem:
    domain: str
    question: str
    operands: tuple[int, int, int]
    ops: tuple[str, str]
    answer: int


def make_problem(domain: str, rng: random.Random, family: str | None = None) -> ToyProblem:
    """A problem of ``domain``, drawn from the operator family ``family`` (default: the domain's own)."""
    o1, o2 = DOMAINS[family or domain]
    while True:
        a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 9)
        if o1 == "-" and a < b:
            a, b = b, a
        if o1 == "-" and o2 == "-" and a - b < c:
            continue
        r1 = OPS[o1](a, b)
        r2 = OPS[o2](r1, c)
        if 1 <= r1 <= 90 and 1 <= r2 <= 90:
            return ToyProblem(domain, f"Compute {a} {o1} {b} {o2} {c}.", (a, b, c), (o1, o2), r2)


SLIP_KINDS = ("sign", "carry", "sign_or_carry")


def slip_value(r: int, rng: random.Random, kind: str = "sign") -> int:
    """The policy's slip: ``sign`` writes the result negated (``12`` -> ``-12``), ``carry`` writes an
    extra hundred (``12`` -> ``112``), ``sign_or_carry`` either, with equal chance. Later steps compute
    on the slipped value."""
    if kind == "sign_or_carry":
        kind = "sign" if rng.random() < 0.5 else "carry"
    if kind == "sign":
        return -r
    if kind == "carry":
        return r + 100
    raise ValueError(f"slip kind must be one of {SLIP_KINDS}, got {kind!r}")


def rollout(p: ToyProblem, rng: random.Random, slip: float, kind: str = "sign") -> tuple[Chain, list[bool], int]:
    """One chain from the noisy policy: (chain, ok-so-far per step, final answer)."""
    a, b, c = p.operands
    o1, o2 = p.ops
    ok_so_far, steps = [], []
    good = True
    r1 = OPS[o1](a, b)
    if rng.random() < slip:
        r1 = slip_value(r1, rng, kind)
        good = False
    steps.append(f"Step 1: {a} {o1} {b} = {r1}.")
    ok_so_far.append(good)
    r2 = OPS[o2](r1, c)
    if rng.random() < slip:
        r2 = slip_value(r2, rng, kind)
        good = False
    steps.append(f"Step 2: {r1} {o2} {c} = {r2}.")
    ok_so_far.append(good and r2 == p.answer)
    response = "\n".join(steps) + f"\nFinal answer: {r2}"
    spans, pos = [], 0
    for s in steps:
        spans.append((pos, pos + len(s)))
        pos += len(s) + 1
    chain = Chain(question=p.question, response=response, spans=spans, final_answer=str(r2),
                  meta={"domain": p.domain})
    return chain, ok_so_far, r2


def mc_labels(ok_so_far: list[bool], slip: float) -> list[float]:
    n = len(ok_so_far)
    return [((1 - slip) ** (n - 1 - i)) if ok else 0.0 for i, ok in enumerate(ok_so_far)]


def make_toy(*, n_train_per_domain: int = 200, n_meta: int = 64, n_eval: int = 64, n_candidates: int = 8,
             domains: tuple[str, ...] = DEFAULT_DOMAINS, corrupted: tuple[str, ...] = ("mix",), flip: float = 0.4,
             slip: float = 0.3, slip_kind: str = "sign", meta_balanced: bool = False,
             sizes: dict[str, int] | None = None, domain_slip_kind: dict[str, str] | None = None,
             same_problems_as: dict[str, str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Build the toy train / meta / eval sets.

    ``sizes`` overrides the number of training prefixes of some domains (a big, badly labelled source
    is the realistic case: with ``flip`` above 0.5 and enough of it, it outweighs the clean domains).
    ``domain_slip_kind`` gives some domains their own slip kind (e.g. ``{"mix": "carry"}``): a
    domain-specific error that only that domain's training labels teach, and that its meta chains and
    held-out Best-of-N candidates show too (the meta and eval sets come from the same clean policy).
    ``same_problems_as`` makes a domain a second *source* of another domain's problems (e.g.
    ``{"add_web": "add"}``: same questions, same policy, same slip kind, its own labels), the way
    several datasets of one problem type differ only in how well they were labelled.

    Returns ``{"train": [LowerExample], "meta": [MetaExample], "eval": [{question, answer, candidates:
    [Chain], correct: [bool], domain}], "corrupted": corrupted}``. Train samples are step prefixes (one
    labelled step each, the v1 unit of data).
    """
    fam = {d: (same_problems_as or {}).get(d, d) for d in domains}
    for d, f in fam.items():
        if f not in DOMAINS:
            raise ValueError(f"domain {d!r}: unknown problem family {f!r} (known: {sorted(DOMAINS)})")
    kinds = {d: (domain_slip_kind or {}).get(d, (domain_slip_kind or {}).get(fam[d], slip_kind)) for d in domains}
    for k in kinds.values():
        slip_value(1, random.Random(0), k)  # unknown kinds fail here, not mid-build
    rng = random.Random(seed)
    flip_rng = random.Random(seed * 7919 + 1)  # own stream: corrupting a domain never changes the chains
    train: list[LowerExample] = []
    for d in domains:
        for k in range((sizes or {}).get(d, n_train_per_domain)):
            p = make_problem(d, rng, fam[d])
            chain, ok, _ = rollout(p, rng, slip, kinds[d])
            ys = mc_labels(ok, slip)
            i = k % len(chain)  # alternate step prefixes
            y = ys[i]
            if d in corrupted and flip_rng.random() < flip:
                y = 1.0 - y
            labels: list[float | None] = [None] * len(chain)
            labels[i] = y
            train.append(LowerExample(chain=chain, labels=labels, domain=d, id=f"{d}-{k}"))
    meta: list[MetaExample] = []
    want = {True: n_meta // 2, False: n_meta - n_meta // 2}
    k = 0
    while (any(want.values()) if meta_balanced else len(meta) < n_meta):
        d = domains[k % len(domains)]
        p = make_problem(d, rng, fam[d])
        chain, _, ans = rollout(p, rng, slip, kinds[d])
        correct = ans == p.answer
        if not meta_balanced or want[correct]:
            meta.append(MetaExample(chain=chain, correct=correct, id=f"meta-{k}"))
            want[correct] -= 1
        k += 1
    rng.shuffle(meta)
    evals = []
    for k in range(n_eval):
        d = domains[k % len(domains)]
        p = make_problem(d, rng, fam[d])
        cands, correct = [], []
        for _ in range(n_candidates):
            chain, _, ans = rollout(p, rng, slip, kinds[d])
            cands.append(chain)
            correct.append(ans == p.answer)
        evals.append({"question": p.question, "answer": str(p.answer), "candidates": cands, "correct": correct,
                      "domain": d})
    return {"train": train, "meta": meta, "eval": evals, "corrupted": tuple(corrupted)}
