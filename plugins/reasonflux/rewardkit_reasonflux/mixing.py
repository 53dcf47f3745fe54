"""GRPO reward mixing of ReasonFlux-PRM (paper Eq. 12): ``r_new = (1 - beta) * r_rule + beta * r_PRM``.

TRL does the weighting (``reward_weights``) and the group normalisation, so the mix is a
composition recipe: two reward functions with weights ``[1 - beta, beta]``. The official RL code
hard-codes ``beta = 0.75`` (score = 0.75 * PRM + 0.25 * rule), the default here.

>>> from rewardkit_reasonflux.mixing import grpo_rewards
>>> rewards = grpo_rewards(prm_model="path/to/prm", mode="official")         # doctest: +SKIP
>>> GRPOTrainer(..., reward_funcs=rewards.funcs, args=GRPOConfig(**rewards.grpo_kwargs(), ...))
"""

from __future__ import annotations

from typing import Any

OFFICIAL_BETA = 0.75


def grpo_mix(prm_model: str | None = None, *, beta: float = OFFICIAL_BETA, mode: str = "paper",
             rule: str = "math.accuracy", prm: str = "reasonflux.prm", rule_params: dict[str, Any] | None = None,
             prm_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compose spec of Eq. 12: ``{rule: 1 - beta, prm: beta}``.

    Args:
        prm_model: path of the PRM (for ``reasonflux.prm``).
        beta: the PRM's share (official code: 0.75).
        mode: ``"paper"`` (Eq. 11 score: mean step score + alpha * trajectory score) or
            ``"official"`` (the released RL worker: the whole response as one step, score at the
            last token); passed to ``reasonflux.prm``.
        rule: the rule-based 0/1 reward (default ``math.accuracy``).
        prm: the process reward to mix in (``reasonflux.prm``, or e.g. ``reasonflux.step``).
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if mode not in ("paper", "official"):
        raise ValueError(f"mode must be 'paper' or 'official', got {mode!r}")
    p = dict(prm_params or {})
    if prm == "reasonflux.prm":
        if prm_model is not None:
            p.setdefault("model", prm_model)
        p.setdefault("mode", mode)
    return {rule: {"weight": 1.0 - beta, **(rule_params or {})}, prm: {"weight": beta, **p}}


def grpo_rewards(prm_model: str | None = None, **kwargs: Any):
    """:func:`grpo_mix` built with :func:`rewardkit.compose` (a RewardSet: ``.funcs``, ``.grpo_kwargs()``)."""
    from rewardkit import compose

    on_error = kwargs.pop("on_error", None)
    return compose(grpo_mix(prm_model, **kwargs), on_error=on_error)
