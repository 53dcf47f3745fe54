"""Plugin module named by the ``rewardkit`` entry point: registration only. The factories import
the real classes when called, so listing plugins imports nothing heavy."""

from __future__ import annotations

from typing import Any

from rewardkit import hookimpl


def _keyword(**params: Any):
    from rewardkit_example.rewards import KeywordReward

    return KeywordReward(**params)


def _rollout_counter(**params: Any):
    from rewardkit_example.hooks import RolloutCounterHook

    return RolloutCounterHook(**params)


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("example.keyword", _keyword, kind="outcome", description="fraction of keywords present in the completion")


@hookimpl
def rewardkit_register_hooks(register) -> None:
    register("example.rollout_counter", _rollout_counter,
             description="counts generation batches and unmatched rows (logged, checkpointed)")
