"""S²R advantage arithmetic (paper §2.3.2, Eq. 4–5), free of any trainer.

* :class:`BaselineTable` — the released code's running baseline: per reward-context sums and counts
  over the whole run, used once a context has ``min_count`` observations;
* :func:`group_baselines` — the paper's baseline: mean reward of the batch's actions per context;
* :func:`action_advantages` — ``w · (R − b(context))`` per action (−1 on a penalised action);
* :func:`code_token_values` — the released trainer's per-token rewards of code-mode rows;
* :func:`action_token_bounds` / :func:`tokens_in` — actions' character spans to token ranges.

The ``s2r.process_advantage`` hook (:mod:`rewardkit_s2r.hooks`) places these values on tokens.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from rewardkit import step_token_ends
from rewardkit_s2r.code import CodeRollout
from rewardkit_s2r.scoring import ScoredTrajectory


class BaselineTable:
    """Per reward-context running sums and counts (synchronised by construction: every rank
    updates it with the same gathered pairs)."""

    def __init__(self, min_count: int = 10, max_context_actions: int | None = 8,
                 keys: frozenset[str] | None = None) -> None:
        self.min_count = int(min_count)
        self.max_context_actions = max_context_actions
        self.keys = keys  # when set, exactly these contexts are tracked
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    @staticmethod
    def context_length(ctx: str) -> int:
        return ctx.count("R") + ctx.count("V")

    def tracked(self, ctx: str) -> bool:
        if self.keys is not None:
            return ctx in self.keys
        return self.max_context_actions is None or self.context_length(ctx) <= self.max_context_actions

    def baseline(self, ctx: str) -> float:
        n = self.counts.get(ctx, 0)
        if n < max(self.min_count, 1) or not self.tracked(ctx):
            return 0.0
        return self.sums[ctx] / n

    def update(self, pairs: Sequence[tuple[str, float]]) -> None:
        for ctx, r in pairs:
            if not self.tracked(ctx):
                continue
            self.sums[ctx] = self.sums.get(ctx, 0.0) + float(r)
            self.counts[ctx] = self.counts.get(ctx, 0) + 1

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts), "min_count": self.min_count,
                "max_context_actions": self.max_context_actions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = {str(k): float(v) for k, v in state["sums"].items()}
        self.counts = {str(k): int(v) for k, v in state["counts"].items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaselineTable) and self.sums == other.sums and self.counts == other.counts


def group_baselines(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Paper Eq. 4: mean reward of the batch's actions per reward context."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for ctx, r in pairs:
        sums[ctx] = sums.get(ctx, 0.0) + float(r)
        counts[ctx] = counts.get(ctx, 0) + 1
    return {c: sums[c] / counts[c] for c in sums}


def action_advantages(details: Sequence[ScoredTrajectory | None], baselines: Any) -> list[list[float] | None]:
    """``w · (R − b(context))`` per action, −1 for a penalised action (truncated response);
    ``baselines`` maps a context to b (a dict or callable)."""
    get = baselines if callable(baselines) else (lambda c: baselines.get(c, 0.0))
    out: list[list[float] | None] = []
    for s in details:
        if s is None:
            out.append(None)
            continue
        out.append([-1.0 if k == s.penalised else w * (r - get(c))
                    for k, (r, w, c) in enumerate(zip(s.rewards, s.weights, s.contexts))])
    return out


def code_token_values(rollouts: Sequence[CodeRollout | None], baseline: Any) -> list[list[float] | None]:
    """The released trainer's per-token rewards of each row (None for rows without a rollout, all 0
    for a row that fails the reconstruction check); ``baseline`` maps a context to b."""
    return [None if r is None else (r.token_values(baseline) if r.valid else [0.0] * len(r.token_values(baseline)))
            for r in rollouts]


def action_token_bounds(spans: Sequence[tuple[int, int]], char_ends: Sequence[int], n_tokens: int) -> list[tuple[int, int]]:
    """Token range ``[lo, hi)`` of each action, with the core's span→token rule
    (:func:`rewardkit.trajectory.step_token_ends`: an action ends on the token holding its last
    character). Zero-width spans (an empty first attempt) get no tokens; tokens after the text
    (EOS and other special tokens) belong to the last action.
    """
    ends = step_token_ends(spans, char_ends)
    bounds = []
    prev = 0
    for k, ((start, end), stop) in enumerate(zip(spans, ends)):
        if k == len(spans) - 1:
            stop = n_tokens
        elif end <= start:
            stop = prev
        stop = max(prev, min(stop, n_tokens))
        bounds.append((prev, stop))
        prev = stop
    return bounds


def tokens_in(char_ends: Sequence[int], lo_char: int, hi_char: int) -> tuple[int, int]:
    """Tokens whose last character lies in ``[lo_char, hi_char)``."""
    return bisect.bisect_right(char_ends, lo_char), bisect.bisect_right(char_ends, hi_char)
