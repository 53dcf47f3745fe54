"""rewardkit entry point of the DreamPRM plugin: registration only (the classes load when first asked for)."""

from __future__ import annotations

from rewardkit import hookimpl


def _reward(**params):
    from rewardkit_dreamprm.rewards import DreamPRMReward

    return DreamPRMReward(**params)


def _hook(**params):
    from rewardkit_dreamprm.hooks import BilevelHook

    return BilevelHook(**params)


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("dreamprm.prm", _reward, kind="process",
             description="DreamPRM step scores (v1 value head on vocab logits / 1.5 generative +/-), "
                         "mean log-odds (v1) or mean p('+') (1.5)")


@hookimpl
def rewardkit_register_hooks(register) -> None:
    register("dreamprm.bilevel", _hook,
             description="bi-level DreamPRM training of the dreamprm.prm reward model during RL, domain "
                         "weights saved and restored with checkpoints")
