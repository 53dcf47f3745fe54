"""Best-of-N selection with a DreamPRM model: score every step, aggregate, take the argmax.

Follows the official v1 selection: mean log-odds (1.5: mean p('+')), ties go to the later
candidate, and a candidate without a parsable step gets log-odds 0 (``no_steps="zero"``; use
``"skip"`` to never pick it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardkit_dreamprm.models import _PRMBase
from rewardkit_dreamprm.objectives import aggregate
from rewardkit_dreamprm.steps import Chain


def select_best(prm: _PRMBase, candidates: Sequence[Chain], *, how: str | None = None, no_steps: str = "zero",
                batch_size: int = 16) -> tuple[int, list[float | None]]:
    """(index of the chosen candidate, the aggregated score of each candidate)."""
    how = how or ("mean_logodds" if prm.variant == "v1" else "mean")
    scores = prm.score_chains(list(candidates), batch_size=batch_size)
    agg: list[float | None] = []
    for s in scores:
        a = aggregate(s, how)
        if a is None and no_steps == "zero":
            a = 0.0 if how == "mean_logodds" else 0.5
        agg.append(a)
    best, best_v = -1, float("-inf")
    for i, a in enumerate(agg):
        if a is not None and a >= best_v:
            best, best_v = i, a
    if best < 0:
        raise ValueError("no candidate has a step to score")
    return best, agg


def best_of_n_eval(prm: _PRMBase, problems: Sequence[dict[str, Any]], *, how: str | None = None,
                   batch_size: int = 16) -> dict[str, Any]:
    """Best-of-N accuracy over ``problems`` (each ``{"candidates": [Chain], "correct": [bool], "domain"?}``).

    Returns ``{"accuracy", "oracle" (any candidate correct), "mean_candidate" (random pick),
    "by_domain": {domain: accuracy}, "margin_by_domain": {domain: mean over questions with both
    kinds of candidates of (mean aggregate of correct ones - of wrong ones)}, "picks": [index]}``.
    The margin shows how clearly the PRM separates good from bad chains when accuracy saturates.
    """
    was = prm.training
    prm.eval()
    picks, hits, by_dom, margins = [], 0, {}, {}
    oracle = mean = 0.0
    try:
        for p in problems:
            i, agg = select_best(prm, p["candidates"], how=how, batch_size=batch_size)
            good = [a for a, c in zip(agg, p["correct"]) if c and a is not None]
            bad = [a for a, c in zip(agg, p["correct"]) if not c and a is not None]
            if good and bad:
                margins.setdefault(p.get("domain", "all"), []).append(sum(good) / len(good) - sum(bad) / len(bad))
            ok = bool(p["correct"][i])
            picks.append(i)
            hits += ok
            oracle += any(p["correct"])
            mean += sum(map(bool, p["correct"])) / len(p["correct"])
            by_dom.setdefault(p.get("domain", "all"), []).append(ok)
    finally:
        prm.train(was)
    n = max(1, len(problems))
    return {"accuracy": hits / n, "oracle": oracle / n, "mean_candidate": mean / n,
            "by_domain": {d: sum(v) / len(v) for d, v in sorted(by_dom.items())},
            "margin_by_domain": {d: sum(v) / len(v) for d, v in sorted(margins.items())}, "picks": picks}
