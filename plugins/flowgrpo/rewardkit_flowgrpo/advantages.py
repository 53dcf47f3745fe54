"""Flow-GRPO advantages: the trajectory outcome broadcast to every planner turn, group-normalised.

Rows are planner turn-samples, ``T_max`` slots per trajectory; slots past a trajectory's ``T_i`` real
turns are padding rows (``is_pad``) that get advantage 0 and loss weight 0.

``norm="trajectory"`` (paper Eq. 7, default)
    A_i = (R_i - mean_k R_k) / (std_k R_k + eps) over the G trajectory rewards of a query; every
    turn of trajectory i gets A_i. The paper has no epsilon (``eps`` defaults to 0 here).
``norm="turn_pooled"`` (released code: verl 0.5.0 ``compute_grpo_outcome_advantage`` on pooled
    turn-samples sharing the query's uid)
    mean and std over all real turn rows of the query, so trajectory i counts T_i times;
    ``eps`` defaults to verl's 1e-6; a group with a single sample gets mean 0 and std 1 (verl).

Both use the unbiased (Bessel) std like torch.std/verl (``unbiased=False`` for the population std).
A group whose rewards are all equal gets advantage 0 and is counted in ``zero_std_groups``.

Loss weights (multiplied into the advantage; the clipped surrogate is linear in a positive factor):
``loss_norm="paper"`` (Eq. 10) gives a real turn the factor T_max / T_i; with TRL's ``loss_type="grpo"``
(mean over a turn's tokens, then mean over the B = Q·G·T_max rows) each turn then weighs
1 / (Q·G·T_i): per-turn token mean, 1/T_i, 1/G. ``loss_norm="token_mean"`` (the code) uses factor 1
with TRL's ``dapo``/``bnpo`` token-mean.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

NORMS = ("trajectory", "turn_pooled")
LOSS_NORMS = ("paper", "token_mean")
DEFAULT_EPS = {"trajectory": 0.0, "turn_pooled": 1e-6}


@dataclass
class AdvantageResult:
    advantages: list[float]          # per row, before loss weights; 0 on padding rows
    weights: list[float]             # per row loss factor (0 on padding rows)
    num_groups: int = 0
    zero_std_groups: int = 0
    group_stats: dict[Hashable, tuple[float, float]] = field(default_factory=dict)  # query -> (mean, std)

    @property
    def scaled(self) -> list[float]:
        return [a * w for a, w in zip(self.advantages, self.weights)]


def _mean_std(values: Sequence[float], unbiased: bool) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1 if unbiased else n)
    return mean, math.sqrt(var)


def broadcast(traj_rewards: dict[Hashable, float], traj_ids: Sequence[Hashable]) -> list[float]:
    """The trajectory reward on every row (turn slot) of that trajectory."""
    missing = sorted({str(t) for t in traj_ids if t not in traj_rewards})
    if missing:
        raise KeyError(f"no reward for trajectories {missing[:5]}")
    return [float(traj_rewards[t]) for t in traj_ids]


def trajectory_rewards(rewards: Sequence[float | None], traj_ids: Sequence[Hashable],
                       is_pad: Sequence[bool]) -> dict[Hashable, float]:
    """One reward per trajectory from per-row rewards; rows of one trajectory must agree (broadcast)."""
    out: dict[Hashable, float] = {}
    for r, t, pad in zip(rewards, traj_ids, is_pad, strict=True):
        if r is None or (isinstance(r, float) and math.isnan(r)):
            if pad:
                continue
            raise ValueError(f"trajectory {t!r} has a turn row without a reward")
        if t in out and not math.isclose(out[t], float(r), abs_tol=1e-9):
            raise ValueError(f"trajectory {t!r} has different rewards on its rows ({out[t]} vs {r}); "
                             "the outcome must be broadcast to every turn")
        out[t] = float(r)
    return out


def flow_advantages(rewards: Sequence[float | None], query_ids: Sequence[Hashable], traj_ids: Sequence[Hashable],
                    is_pad: Sequence[bool], num_turns: Sequence[int] | None = None, max_turns: int | None = None, *,
                    norm: str = "trajectory", eps: float | None = None, unbiased: bool = True,
                    loss_norm: str = "paper") -> AdvantageResult:
    """Per-row advantages and loss weights for one generation batch (see the module docstring).

    ``num_turns`` (T_i per row) and ``max_turns`` (T_max) are needed for ``loss_norm="paper"``.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss_norm not in LOSS_NORMS:
        raise ValueError(f"loss_norm must be one of {LOSS_NORMS}, got {loss_norm!r}")
    n = len(rewards)
    if not (len(query_ids) == len(traj_ids) == len(is_pad) == n):
        raise ValueError("rewards, query_ids, traj_ids and is_pad must have one entry per row")
    eps = DEFAULT_EPS[norm] if eps is None else float(eps)
    per_traj = trajectory_rewards(rewards, traj_ids, is_pad)
    traj_query: dict[Hashable, Hashable] = {}
    for q, t in zip(query_ids, traj_ids):
        if traj_query.setdefault(t, q) != q:
            raise ValueError(f"trajectory {t!r} appears under two queries")

    groups: dict[Hashable, list[float]] = {}
    if norm == "trajectory":
        for t, q in traj_query.items():
            if t in per_traj:
                groups.setdefault(q, []).append(per_traj[t])
    else:
        for q, t, pad in zip(query_ids, traj_ids, is_pad):
            if not pad:
                groups.setdefault(q, []).append(per_traj[t])

    stats: dict[Hashable, tuple[float, float]] = {}
    zero: set[Hashable] = set()
    for q, vals in groups.items():
        if norm == "turn_pooled" and len(vals) == 1:
            stats[q] = (0.0, 1.0)  # verl: a single-sample group gets mean 0, std 1
            continue
        mean, std = _mean_std(vals, unbiased)
        stats[q] = (mean, std)
        if max(vals) - min(vals) <= 1e-12:
            zero.add(q)

    traj_adv: dict[Hashable, float] = {}
    for t, q in traj_query.items():
        if t not in per_traj:
            continue
        if q in zero:
            traj_adv[t] = 0.0
            continue
        mean, std = stats[q]
        denom = std + eps
        traj_adv[t] = 0.0 if denom == 0 else (per_traj[t] - mean) / denom

    advantages = [0.0 if pad else traj_adv[t] for t, pad in zip(traj_ids, is_pad)]
    if loss_norm == "paper":
        if num_turns is None or max_turns is None:
            raise ValueError("loss_norm='paper' needs num_turns (T_i per row) and max_turns (T_max)")
        weights = []
        for pad, ti in zip(is_pad, num_turns, strict=True):
            if pad:
                weights.append(0.0)
            else:
                if not 1 <= ti <= max_turns:
                    raise ValueError(f"T_i={ti} outside 1..T_max={max_turns}")
                weights.append(max_turns / ti)
    else:
        weights = [0.0 if pad else 1.0 for pad in is_pad]
    return AdvantageResult(advantages, weights, len(groups), len(zero), stats)
