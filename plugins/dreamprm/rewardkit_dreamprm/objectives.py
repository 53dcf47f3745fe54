"""DreamPRM's losses and step-score aggregations, on :class:`~rewardkit_dreamprm.models.StepOutputs`.

Lower level, one value per sample (weighted and averaged by the trainer):
  v1:  mean over the sample's labelled prefixes of ``(sigmoid(logit) - y)^2`` (MSE on soft MC labels);
  1.5: mean over labelled slots of ``-(y log p('+') + (1 - y) log p('-'))`` (token cross-entropy; equal to
       the official hard-label CE when y is 0 or 1).
Upper level, one value per meta chain with final correctness r:
  v1:  ``(sigmoid(mean_i logodds(p_i)) - r)^2``;
  1.5 ``target="both"``: r=1 -> ``(mean p('+') - 1)^2``, r=0 -> ``(mean p('-') - 1)^2``;
  1.5 ``target="+"``: ``(mean p('+') - r)^2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rewardkit_dreamprm.models import LOGODDS_EPS, StepOutputs


def lower_losses(out: StepOutputs, labels: torch.Tensor, n: int) -> torch.Tensor:
    labels = labels.to(out.raw.device)
    if out.variant == "v1":
        per_step = (torch.sigmoid(out.raw) - labels) ** 2
    else:
        per_step = -(labels * out.raw[:, 0] + (1 - labels) * out.raw[:, 1])
    return out.per_owner(per_step, n)


def meta_losses(out: StepOutputs, correct: torch.Tensor, n: int, *, target: str = "both",
                eps: float = LOGODDS_EPS) -> torch.Tensor:
    r = correct.to(out.raw.device).float()
    if out.variant == "v1":
        s = torch.sigmoid(out.per_owner(out.logodds(eps), n))
        return (s - r) ** 2
    p_plus = out.per_owner(out.raw[:, 0].exp(), n)
    if target == "+":
        return (p_plus - r) ** 2
    if target != "both":
        raise ValueError(f"meta target must be 'both' or '+', got {target!r}")
    p_minus = out.per_owner(out.raw[:, 1].exp(), n)
    s = torch.where(r > 0.5, p_plus, p_minus)
    return (s - 1.0) ** 2


def safe_logodds(p: float, eps: float = LOGODDS_EPS) -> float:
    """log(p/(1-p)) with p clamped to [eps, 1-eps]; NaN input is an error, not a score."""
    p = float(p)
    if math.isnan(p):
        raise FloatingPointError("step probability is NaN")
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p) - math.log1p(-p)


def aggregate(scores: Sequence[float], how: str = "mean_logodds", eps: float = LOGODDS_EPS) -> float | None:
    """One trajectory score from step probabilities: ``mean_logodds`` (v1 Best-of-N), ``mean``
    (1.5), ``sigmoid_mean_logodds`` (the v1 meta aggregate), ``min``, ``prod``. No steps: None."""
    if len(scores) == 0:
        return None
    if how == "mean_logodds":
        return sum(safe_logodds(p, eps) for p in scores) / len(scores)
    if how == "sigmoid_mean_logodds":
        z = sum(safe_logodds(p, eps) for p in scores) / len(scores)
        return 1.0 / (1.0 + math.exp(-z))
    if how == "mean":
        return float(sum(scores) / len(scores))
    if how == "min":
        return float(min(scores))
    if how == "prod":
        return float(math.prod(scores))
    raise ValueError(f"unknown aggregation {how!r}")
