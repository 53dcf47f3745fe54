"""Per-token (dense) rewards from process rewards, engine-neutral (lists in, lists out; no torch).

A response's process reward gives step scores with character spans; each step's score goes on the
token that ends the step (:func:`rewardkit.trajectory.step_token_ends`), the outcome rewards'
weighted sum on the last valid token. For PPO with a critic (GAE) these are the per-token rewards.

:func:`process_supervision_rows` is DeepSeekMath's process supervision (§4.1.3), the same
arithmetic as rewardkit's ``process_advantage`` hook for TRL: a group's step rewards are
normalised by the group's mean and (sample) std plus ``eps``; a token's advantage is the sum of
the normalised rewards of the steps that end at or after it, tokens after the last step get the
last step's value, and several process rewards add up with their weights.

Each response carries, per process reward, three rows over the response's tokens: the number of
steps ending at each token, the sum and the sum of squares of their raw scores. Counting steps
(instead of testing scores for zero) keeps a step scored exactly 0.0 a step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewardkit.reward import StepScores
from rewardkit.trajectory import step_token_ends, token_char_ends
from rewardkit.trl import token_advantages  # the TRL hook's arithmetic; imports no TRL

__all__ = ["StepRows", "dense_row", "process_supervision_rows", "step_rows"]


@dataclass
class StepRows:
    """One process reward's steps on one response's tokens (see the module docstring)."""

    weight: float
    count: list[float]
    total: list[float]
    squares: list[float]

    @property
    def ends(self) -> list[int]:
        """Exclusive token ends of the steps (one per token that ends at least one step)."""
        return [t + 1 for t, c in enumerate(self.count) if c > 0]


def step_rows(steps: StepScores | None, ids: Sequence[int], text: str, tokenizer: Any, width: int,
              weight: float = 1.0) -> StepRows:
    """Place one response's step scores on its tokens; ``ids`` are the valid response tokens whose
    decoding (``skip_special_tokens=True``) is ``text``, the text the reward scored."""
    if len(ids) > width:
        raise ValueError(f"{len(ids)} response tokens do not fit a row of {width}")
    rows = StepRows(float(weight), [0.0] * width, [0.0] * width, [0.0] * width)
    if steps is None or not steps.scores or not ids:
        return rows
    ends = step_token_ends(steps.spans, token_char_ends(list(ids), tokenizer, text))
    for score, end in zip(steps.scores, ends):
        t = min(max(int(end), 1), len(ids)) - 1
        rows.count[t] += 1.0
        rows.total[t] += float(score)
        rows.squares[t] += float(score) * float(score)
    return rows


def dense_row(parts: Sequence[StepRows], outcome: float, length: int, width: int) -> list[float]:
    """Per-token rewards: each process reward's weighted step scores at their end tokens, plus the
    outcome at the last valid token (``length - 1``); 0 elsewhere and on padding."""
    row = [0.0] * width
    for p in parts:
        for t in range(min(length, width)):
            if p.count[t]:
                row[t] += p.weight * p.total[t]
    if length > 0:
        row[min(length, width) - 1] += float(outcome)
    return row


def process_supervision_rows(parts: Sequence[Mapping[str, StepRows]], lengths: Sequence[int],
                             groups: Sequence[Any], width: int, eps: float = 1e-4) -> list[list[float]]:
    """DeepSeekMath process-supervision advantages, one row per response.

    ``parts[i]`` maps each process reward's name to response i's :class:`StepRows`; ``groups[i]``
    is its prompt group (verl's ``uid``). Responses without steps get 0 everywhere.
    """
    n = len(parts)
    if not (len(lengths) == len(groups) == n):
        raise ValueError(f"{n} responses, {len(lengths)} lengths and {len(groups)} group ids")
    names = sorted({k for p in parts for k in p})
    out = [[0.0] * width for _ in range(n)]
    for name in names:
        sums: dict[Any, list[float]] = {}
        for p, g in zip(parts, groups):
            r = p.get(name)
            acc = sums.setdefault(g, [0.0, 0.0, 0.0])
            if r is not None:
                acc[0] += sum(r.count)
                acc[1] += sum(r.total)
                acc[2] += sum(r.squares)
        stats = {}
        for g, (cnt, s1, s2) in sums.items():
            mean = s1 / cnt if cnt > 0 else 0.0
            var = (s2 - cnt * mean * mean) / (cnt - 1) if cnt > 1 else 0.0
            stats[g] = (mean, math.sqrt(max(var, 0.0)) + eps)
        for i, (p, g) in enumerate(zip(parts, groups)):
            r = p.get(name)
            if r is None or not any(r.count):
                continue
            mean, scale = stats[g]
            ends = r.ends
            values = [(r.total[e - 1] - r.count[e - 1] * mean) / scale for e in ends]
            row = token_advantages(values, ends, int(lengths[i]), width)
            acc_row = out[i]
            for t in range(width):
                acc_row[t] += r.weight * row[t]
    return out
