"""pluggy registrations of the RewardMap plugin (entry point ``rewardmap``); nothing else.

The factories import the real classes when called, so listing plugins imports no torch.
"""

from __future__ import annotations

from typing import Any

from rewardkit import hookimpl


def _route(**params: Any) -> Any:
    from rewardkit_rewardmap.rewards import RouteReward

    return RouteReward(**params)


def _plus(**params: Any) -> Any:
    from rewardkit_rewardmap.rewards import PlusReward

    return PlusReward(**params)


def _map(**params: Any) -> Any:
    from rewardkit_rewardmap.rewards import MapReward

    return MapReward(**params)


def _curriculum(**params: Any) -> Any:
    from rewardkit_rewardmap.hooks import CurriculumHook

    return CurriculumHook(**params)


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("rewardmap.route", _route, kind="outcome",
             description="RewardMap planning reward: W*(10*acc + alpha*detail), ReasonMap validity + partial credit")
    register("rewardmap.plus", _plus, kind="outcome",
             description="RewardMap ReasonMap-Plus reward: W_map*10*exact match (yes/no, count, option A-D)")
    register("rewardmap.reward", _map, kind="outcome",
             description="RewardMap reward dispatching on the 'type' column (planning or a Plus type)")


@hookimpl
def rewardkit_register_hooks(register) -> None:
    register("rewardmap.curriculum", _curriculum,
             description="RewardMap multi-stage curriculum: TorF -> line counting -> stop counting -> planning")


@hookimpl
def rewardkit_register_commands(register) -> None:
    from rewardkit_rewardmap.data import configure_cli, run_cli  # torch-free

    register("rewardmap-data", configure_cli, run_cli,
             help="write a synthetic RewardMap transit-map dataset (all five question types + planning)")
