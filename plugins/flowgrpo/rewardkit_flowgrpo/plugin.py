"""Entry point of the Flow-GRPO plugin: registers ``flowgrpo.outcome`` and ``flowgrpo.broadcast`` (nothing else)."""

from __future__ import annotations

from rewardkit import hookimpl


def _outcome(**params):
    from rewardkit_flowgrpo.rewards import FlowOutcomeReward

    return FlowOutcomeReward(**params)


def _broadcast(**params):
    from rewardkit_flowgrpo.hooks import FlowBroadcastHook

    return FlowBroadcastHook(**params)


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("flowgrpo.outcome", _outcome, kind="multi_turn",
             description="Flow-GRPO trajectory outcome: final answer judged (exact | math | llm) once per "
                         "trajectory and broadcast to every planner turn; failed judges and tool errors give 0, counted")


@hookimpl
def rewardkit_register_hooks(register) -> None:
    register("flowgrpo.broadcast", _broadcast,
             description="Flow-GRPO advantages: outcome broadcast to every planner turn, group-normalised over "
                         "trajectories (norm='trajectory', paper Eq. 7) or pooled turns (norm='turn_pooled', code); "
                         "Eq. 10 or token-mean loss weights; padding turn slots carry no gradient")
