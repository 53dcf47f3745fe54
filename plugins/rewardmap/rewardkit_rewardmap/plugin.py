"""pluggy registrations of the RewardMap plugin (entry point ``rewardmap``)."""

from __future__ import annotations

from rewardkit import hookimpl


@hookimpl
def rewardkit_register_rewards(register) -> None:
    from rewardkit_rewardmap.rewards import MapReward, PlusReward, RouteReward

    register("rewardmap.route", RouteReward, kind="outcome",
             description="RewardMap planning reward: W*(10*acc + alpha*detail), ReasonMap validity + partial credit")
    register("rewardmap.plus", PlusReward, kind="outcome",
             description="RewardMap ReasonMap-Plus reward: W_map*10*exact match (yes/no, count, option A-D)")
    register("rewardmap.reward", MapReward, kind="outcome",
             description="RewardMap reward dispatching on the 'type' column (planning or a Plus type)")


@hookimpl
def rewardkit_register_hooks(register) -> None:
    from rewardkit_rewardmap.curriculum import CurriculumHook

    register("rewardmap.curriculum", CurriculumHook,
             description="RewardMap multi-stage curriculum: TorF -> line counting -> stop counting -> planning")


@hookimpl
def rewardkit_register_commands(register) -> None:
    from rewardkit_rewardmap.data import configure_cli, run_cli

    register("rewardmap-data", configure_cli, run_cli,
             help="write a synthetic RewardMap transit-map dataset (all five question types + planning)")
