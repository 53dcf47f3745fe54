"""The optimiser and learning-rate schedules of the official DreamPRM code, reproduced exactly.

Both released trainers build ``transformers.AdamW`` (the class transformers deprecated and later
removed; DreamPRM pins 4.51, DreamPRM-1.5 pins 4.49) and DreamPRM-1.5 adds
``get_cosine_schedule_with_warmup`` with ``num_warmup_steps = 0.05 * iterations`` (a float). Neither
is what ``torch.optim.AdamW`` + an integer warm-up computes:

* **epsilon**: transformers adds ``eps`` to ``sqrt(v)`` *before* the bias correction and folds the
  correction into the step size, ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``;
  torch adds it after, ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``. The effective
  epsilon differs by ``sqrt(1 - b2^t)`` (a factor of 31.6 at the first step), so no choice of torch's
  ``eps`` matches at every step.
* **weight decay**: transformers decays the parameter *after* the Adam update
  (``p <- (1 - lr*wd) * (p - u)``); torch decays it before (``p <- (1 - lr*wd) * p - u``).
* **warm-up**: the factor at scheduler step ``k`` is ``k / W`` (0 at the first step), with ``W`` the
  float ``0.05 * total``; the cosine runs over ``total - W`` steps.

:class:`LegacyAdamW` is the transformers update written out in the same order of floating-point
operations, so a run matches it bit for bit (``tests/conformance/optimizer_schedule.json``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from rewardkit_dreamprm.config import ADAM_IMPLS, SCHEDULES


class LegacyAdamW(torch.optim.Optimizer):
    """AdamW as ``transformers.AdamW`` (<= 4.x) computes it: eps inside the bias-corrected step,
    decoupled weight decay applied after the Adam update. Defaults are that class's (eps 1e-6)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, correct_bias: bool = True) -> None:
        if lr < 0.0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if eps < 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "correct_bias": correct_bias})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LegacyAdamW does not take sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                denom = v.sqrt().add_(group["eps"])
                step_size = group["lr"]
                if group["correct_bias"]:
                    step_size = step_size * math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
                p.addcdiv_(m, denom, value=-step_size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss


def make_adamw(params: Iterable[Any], *, lr: float, weight_decay: float, eps: float,
               impl: str = "transformers") -> torch.optim.Optimizer:
    """``impl="transformers"``: :class:`LegacyAdamW` (the official optimiser); ``"torch"``: torch's."""
    if impl == "transformers":
        return LegacyAdamW(params, lr=lr, eps=eps, weight_decay=weight_decay)
    if impl == "torch":
        return torch.optim.AdamW(params, lr=lr, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"adam_impl must be one of {ADAM_IMPLS}, got {impl!r}")


def cosine_warmup_factor(step: int, warmup: float, total: int) -> float:
    """The lr factor at scheduler step ``step`` of transformers' cosine schedule with a linear warm-up
    over ``warmup`` steps (a float, as the official ``0.05 * iterations``), decaying to 0 at ``total``."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


class CosineWarmup:
    """Picklable lr factor ``step -> cosine_warmup_factor(step, warmup, total)`` for ``LambdaLR``."""

    def __init__(self, warmup: float, total: int) -> None:
        self.warmup, self.total = float(warmup), int(total)

    def __call__(self, step: int) -> float:
        return cosine_warmup_factor(step, self.warmup, self.total)


def make_scheduler(opt: torch.optim.Optimizer, kind: str, *, total: int, warmup_ratio: float = 0.05,
                   step_size: int = 5000, gamma: float = 0.5) -> torch.optim.lr_scheduler.LRScheduler:
    """``step``: StepLR (v1 lower level); ``cosine``: warm-up over ``warmup_ratio * total`` then cosine
    to 0 at ``total`` (1.5, both levels); ``constant``."""
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, CosineWarmup(warmup_ratio * total, total))
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"lr scheduler must be one of {SCHEDULES}, got {kind!r}")
