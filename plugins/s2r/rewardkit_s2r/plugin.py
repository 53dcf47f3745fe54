"""rewardkit entry point of the S²R plugin: registration only (rewards, trainer hooks, ``s2r-data``)."""

from __future__ import annotations

from typing import Any

from rewardkit import hookimpl


def _outcome(**params: Any) -> Any:
    from rewardkit_s2r.rewards import S2ROutcomeReward

    return S2ROutcomeReward(**params)


def _process(**params: Any) -> Any:
    from rewardkit_s2r.rewards import S2RProcessReward

    return S2RProcessReward(**params)


def _process_advantage(**params: Any) -> Any:
    from rewardkit_s2r.hooks import S2RProcessAdvantageHook

    return S2RProcessAdvantageHook(**params)


def _outcome_rloo(**params: Any) -> Any:
    from rewardkit_s2r.hooks import S2ROutcomeRLOOHook

    return S2ROutcomeRLOOHook(**params)


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("s2r.outcome", _outcome, kind="outcome",
             description="S2R outcome reward: +1/-1 on the last attempt's correctness (use with RLOO)")
    register("s2r.process", _process, kind="process",
             description="S2R process reward: +1/-1 per attempt and per verification whose verdict matches the truth")


@hookimpl
def rewardkit_register_hooks(register) -> None:
    register("s2r.process_advantage", _process_advantage,
             description="S2R process-level advantages: per-action reward minus the reward-context baseline, on tokens")
    register("s2r.outcome_rloo", _outcome_rloo,
             description="GRPOTrainer(scale_rewards='none') advantages x M/(M-1) = RLOO leave-one-out advantages")


@hookimpl
def rewardkit_register_commands(register) -> None:
    from rewardkit_s2r.stage0 import configure_cli, run_cli

    register("s2r-data", configure_cli, run_cli,
             help="S2R stage 0: sample K answers per question, verify with a judge, build trajectories")
