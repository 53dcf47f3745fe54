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

from rewardkit.reward import Batch, Reward, RewardInputError
from rewardkit_reasonflux import official

OFFICIAL_BETA = official.RELEASED_BETA


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
        rule: the rule-based 0/1 reward (default ``math.accuracy``, more lenient than the released
            strict-box check; :class:`ReleasedRLReward` (``reasonflux.rl``) is the released reward).
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


class ReleasedRLReward(Reward):
    """The released GRPO worker's whole per-sample reward, as one reward function (``reasonflux.rl``).

    ``float32(beta * PRM + (1 - beta) * rule)`` where PRM is ``reasonflux.prm`` in official mode and
    rule is the released strict-box check (:func:`rewardkit_reasonflux.official.strict_box_score`:
    the last ``\\boxed{}`` of the response's last 100 characters equals the gold string). Use it
    alone (weight 1) to get the released numbers bit for bit; :func:`grpo_mix` lets TRL weight
    separate rewards instead (float32 sums, ``math.accuracy`` as the rule).

    Args:
        model: the PRM (path); beta: the PRM's share (released: 0.75).
        gold_column: dataset column with the ground truth (compared as a string).
        prm_params: further ``reasonflux.prm`` arguments (``policy_tokenizer``, ``max_length``, ...).
    A row whose PRM score is None (the released code raises there) or whose gold is missing is None.
    """

    def __init__(self, *, model: Any = None, beta: float = OFFICIAL_BETA, gold_column: str = "solution",
                 prm_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        from rewardkit_reasonflux.prm import ReasonFluxPRM

        params = dict(prm_params or {})
        params["mode"] = "official"
        self.prm = ReasonFluxPRM(model=model, name=f"{self.name or 'reasonflux.rl'}/prm", **params)
        self.beta, self.gold_column = float(beta), gold_column
        self.last_prm_scores: list[float | None] = []
        self.last_rule_scores: list[float | None] = []

    def score_batch(self, batch: Batch) -> list[float | None]:
        if self.gold_column not in batch.columns:
            raise RewardInputError(f"reward {self.name!r} needs gold answers in column {self.gold_column!r}; "
                                   f"columns passed: {sorted(batch.columns) or 'none'}")
        prm = self.prm.score_batch(batch)
        golds = batch.columns[self.gold_column]
        rule: list[float | None] = [None if (batch.skip[i] or golds[i] is None) else
                                    official.strict_box_score(batch.texts[i], str(golds[i]))
                                    for i in range(len(batch))]
        self.last_prm_scores, self.last_rule_scores = prm, rule
        return [None if p is None or r is None else official.released_mix(p, r, self.beta)
                for p, r in zip(prm, rule)]

    def log_components(self, batch: Batch) -> None:
        log = batch.context.log_metric
        if log is None:
            return
        self.prm.log_components(batch)
        for key, vals in (("prm", self.last_prm_scores), ("rule", self.last_rule_scores)):
            got = [v for v in vals if v is not None]
            if got:
                log(f"{self.name}/{key}_mean", sum(got) / len(got))
