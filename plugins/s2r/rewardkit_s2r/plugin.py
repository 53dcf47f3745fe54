"""rewardkit entry point of the S²R plugin: rewards, trainer hooks and the ``s2r-data`` command."""

from __future__ import annotations

from rewardkit import hookimpl


@hookimpl
def rewardkit_register_rewards(register) -> None:
    from rewardkit_s2r.rewards import S2ROutcome, S2RProcess

    register("s2r.outcome", S2ROutcome, kind="outcome",
             description="S2R outcome reward: +1/-1 on the last attempt's correctness (use with RLOO)")
    register("s2r.process", S2RProcess, kind="process",
             description="S2R process reward: +1/-1 per attempt and per verification whose verdict matches the truth")


@hookimpl
def rewardkit_register_hooks(register) -> None:
    from rewardkit_s2r.advantage import S2ROutcomeRLOO, S2RProcessAdvantage

    register("s2r.process_advantage", S2RProcessAdvantage,
             description="S2R process-level advantages: per-action reward minus the reward-context baseline, on tokens")
    register("s2r.outcome_rloo", S2ROutcomeRLOO,
             description="GRPOTrainer(scale_rewards='none') advantages x M/(M-1) = RLOO leave-one-out advantages")


@hookimpl
def rewardkit_register_commands(register) -> None:
    from rewardkit_s2r.stage0 import configure_cli, run_cli

    register("s2r-data", configure_cli, run_cli,
             help="S2R stage 0: sample K answers per question, verify with a judge, build trajectories")
