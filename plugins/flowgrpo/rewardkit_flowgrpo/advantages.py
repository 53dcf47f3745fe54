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

``precision="float64"`` (default) computes in Python floats. ``precision="bf16"`` (only with
``norm="turn_pooled"``) reproduces the released numbers bit for bit: AgentFlow's daemon stores the
rewards as a bfloat16 tensor, so verl 0.5.0 takes the group mean and std and the advantage in
bfloat16 (on CPU torch), e.g. a group of 8 with one success gets 2.46875 / -0.353515625 instead of
2.4748... / -0.3535... (see docs/methods/flowgrpo.md).

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
PRECISIONS = ("float64", "bf16")
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
                    loss_norm: str = "paper", precision: str = "float64") -> AdvantageResult:
    """Per-row advantages and loss weights for one generation batch (see the module docstring).

    ``num_turns`` (T_i per row) and ``max_turns`` (T_max) are needed for ``loss_norm="paper"``.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss_norm not in LOSS_NORMS:
        raise ValueError(f"loss_norm must be one of {LOSS_NORMS}, got {loss_norm!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and (norm != "turn_pooled" or not unbiased):
        raise ValueError("precision='bf16' reproduces the released verl computation: it needs norm='turn_pooled' "
                         "and unbiased=True")
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

    if precision == "bf16":
        advantages, stats, zero = _verl_bf16(per_traj, query_ids, traj_ids, is_pad, eps)
        return AdvantageResult(advantages, _loss_weights(is_pad, num_turns, max_turns, loss_norm), len(groups),
                               len(zero), stats)

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
    return AdvantageResult(advantages, _loss_weights(is_pad, num_turns, max_turns, loss_norm), len(groups),
                           len(zero), stats)


def _loss_weights(is_pad: Sequence[bool], num_turns: Sequence[int] | None, max_turns: int | None,
                  loss_norm: str) -> list[float]:
    if loss_norm != "paper":
        return [0.0 if pad else 1.0 for pad in is_pad]
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
    return weights


def _verl_bf16(per_traj: dict[Hashable, float], query_ids: Sequence[Hashable], traj_ids: Sequence[Hashable],
               is_pad: Sequence[bool], eps: float
               ) -> tuple[list[float], dict[Hashable, tuple[float, float]], set[Hashable]]:
    """verl 0.5.0's GRPO advantage on AgentFlow's bfloat16 turn rewards, op for op on CPU torch.

    Every real row is one sample. A query with one sample gets mean 0 and std 1 (float32 tensors, so
    that row's arithmetic is float32 before it is stored back as bfloat16); otherwise the mean, the
    unbiased std, ``std + eps`` and the advantage are bfloat16 operations.
    """
    import torch

    real = [i for i, pad in enumerate(is_pad) if not pad]
    scores = torch.tensor([per_traj[traj_ids[i]] for i in real], dtype=torch.bfloat16)
    members: dict[Hashable, list[int]] = {}
    for k, i in enumerate(real):
        members.setdefault(query_ids[i], []).append(k)
    mean: dict[Hashable, torch.Tensor] = {}
    std: dict[Hashable, torch.Tensor] = {}
    zero: set[Hashable] = set()
    for q, ks in members.items():
        vals = scores[ks]
        if len(ks) == 1:
            mean[q], std[q] = torch.tensor(0.0), torch.tensor(1.0)
            continue
        mean[q], std[q] = torch.mean(vals), torch.std(vals.unsqueeze(0))
        if bool((vals == vals[0]).all()):
            zero.add(q)
    out = scores.clone()
    for k, i in enumerate(real):
        q = query_ids[i]
        out[k] = (scores[k] - mean[q]) / (std[q] + eps)
    advantages = [0.0] * len(is_pad)
    for k, i in enumerate(real):
        advantages[i] = float(out[k])
    return advantages, {q: (float(mean[q]), float(std[q])) for q in members}, zero
