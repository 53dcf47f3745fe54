"""Presets of ReasonFlux-PRM's GRPO reward mixing (paper Eq. 12): ``r = (1 - beta) * r_rule + beta * r_PRM``.

TRL does the weighting (``reward_weights``) and the group normalisation, so the mix is a
composition recipe: two reward functions with weights ``[1 - beta, beta]``. The official RL code
hard-codes ``beta = 0.75`` (score = 0.75 * PRM + 0.25 * rule), the default of both presets.

* ``"paper"``: ``reasonflux.prm`` in paper mode (Eq. 11 score: mean step score + alpha * trajectory).
* ``"official"``: ``reasonflux.prm`` in official mode (the released RL worker: the whole response as
  one step, score at the last token).

>>> from rewardkit_reasonflux.config import grpo_kwargs, grpo_rewards
>>> rewards = grpo_rewards("path/to/prm", mode="official")                   # doctest: +SKIP
>>> GRPOTrainer(..., reward_funcs=rewards.funcs, args=GRPOConfig(**grpo_kwargs("official"), ...))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rewardkit_reasonflux import official

OFFICIAL_BETA = official.RELEASED_BETA
MODES = ("paper", "official")


@dataclass(frozen=True)
class MixPreset:
    """One Eq. 12 mix: the PRM's share ``beta``, the PRM's scoring ``mode`` and the two rewards mixed.

    ``rule`` is the rule-based 0/1 reward (default ``math.accuracy``, more lenient than the released
    strict-box check; ``reasonflux.rl`` is the released reward as one function); ``prm`` the process
    reward mixed in (``reasonflux.prm``, or e.g. ``reasonflux.step``).
    """

    beta: float = OFFICIAL_BETA
    mode: str = "paper"
    rule: str = "math.accuracy"
    prm: str = "reasonflux.prm"

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'paper' or 'official', got {self.mode!r}")

    def reward_weights(self) -> list[float]:
        """TRL's ``reward_weights`` for the rewards of :meth:`spec`, in their order (rule, PRM)."""
        return [1.0 - self.beta, self.beta]

    def spec(self, prm_model: str | None = None, *, rule_params: dict[str, Any] | None = None,
             prm_params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The :func:`rewardkit.compose` spec ``{rule: 1 - beta, prm: beta}``."""
        p = dict(prm_params or {})
        if self.prm == "reasonflux.prm":
            if prm_model is not None:
                p.setdefault("model", prm_model)
            p.setdefault("mode", self.mode)
        w_rule, w_prm = self.reward_weights()
        return {self.rule: {"weight": w_rule, **(rule_params or {})}, self.prm: {"weight": w_prm, **p}}


PRESETS: dict[str, MixPreset] = {"paper": MixPreset(mode="paper"), "official": MixPreset(mode="official")}


def get_preset(preset: str | MixPreset = "paper", **fields: Any) -> MixPreset:
    """The named :class:`MixPreset` (or ``preset`` itself) with ``fields`` replaced (``beta``, ``mode``, ...)."""
    if isinstance(preset, MixPreset):
        return replace(preset, **fields)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    return replace(PRESETS[preset], **fields)


def grpo_kwargs(preset: str | MixPreset = "paper", **overrides: Any) -> dict[str, Any]:
    """``GRPOConfig`` keyword arguments of a preset: ``reward_weights = [1 - beta, beta]`` for the
    rewards of :func:`grpo_mix` / :func:`grpo_rewards` (rule first), then ``overrides`` (GRPOConfig
    fields; ``beta`` there is TRL's KL coefficient, so another PRM share is ``MixPreset(beta=...)``)."""
    return {"reward_weights": get_preset(preset).reward_weights(), **overrides}


def grpo_mix(prm_model: str | None = None, *, beta: float = OFFICIAL_BETA, mode: str = "paper",
             rule: str = "math.accuracy", prm: str = "reasonflux.prm", rule_params: dict[str, Any] | None = None,
             prm_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compose spec of Eq. 12: ``{rule: 1 - beta, prm: beta}``.

    Args:
        prm_model: path of the PRM (for ``reasonflux.prm``).
        beta: the PRM's share (official code: 0.75).
        mode: ``"paper"`` or ``"official"``, passed to ``reasonflux.prm`` (see the module docstring).
        rule, prm: the two rewards mixed (see :class:`MixPreset`).
    """
    return MixPreset(beta=beta, mode=mode, rule=rule, prm=prm).spec(prm_model, rule_params=rule_params,
                                                                     prm_params=prm_params)


def grpo_rewards(prm_model: str | None = None, **kwargs: Any):
    """:func:`grpo_mix` built with :func:`rewardkit.compose` (a RewardSet: ``.funcs``, ``.grpo_kwargs()``)."""
    from rewardkit import compose

    on_error = kwargs.pop("on_error", None)
    return compose(grpo_mix(prm_model, **kwargs), on_error=on_error)
