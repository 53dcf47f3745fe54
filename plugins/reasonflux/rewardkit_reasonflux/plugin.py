"""pluggy entry point of rewardkit-reasonflux: registers the rewards and the CLI commands.

Registration only: each factory imports its class when a reward is built, so listing plugins
imports neither the reward modules nor torch.
"""

from __future__ import annotations

from typing import Any

from rewardkit import hookimpl


def _quality(**params: Any):
    from rewardkit_reasonflux.rewards import QualityReward

    return QualityReward(**params)


def _coherence(**params: Any):
    from rewardkit_reasonflux.rewards import CoherenceReward

    return CoherenceReward(**params)


def _alignment(**params: Any):
    from rewardkit_reasonflux.rewards import AlignmentReward

    return AlignmentReward(**params)


def _step(**params: Any):
    from rewardkit_reasonflux.rewards import StepReward

    return StepReward(**params)


def _prm(**params: Any):
    from rewardkit_reasonflux.rewards import ReasonFluxPRMReward

    return ReasonFluxPRMReward(**params)


def _released_rl(**params: Any):
    from rewardkit_reasonflux.rewards import ReleasedRLReward

    return ReleasedRLReward(**params)


def _trajectory(**params: Any):
    from rewardkit_reasonflux.rewards import TrajectoryReward

    return TrajectoryReward(**params)


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("reasonflux.quality", _quality, kind="process",
             description="ReasonFlux step quality: an expert judge (local model or OpenAI-compatible HTTP) grades "
                         "each thinking step in [0,1]")
    register("reasonflux.coherence", _coherence, kind="process",
             description="ReasonFlux contrastive coherence of consecutive thinking steps vs negatives from other "
                         "trajectories (cosine/tau, sentence embeddings)")
    register("reasonflux.alignment", _alignment, kind="process",
             description="ReasonFlux alignment: cosine of each thinking step with the final response")
    register("reasonflux.step", _step, kind="process",
             description="ReasonFlux step reward: alignment, quality, coherence mixed by softmax-over-values weights")
    register("reasonflux.prm", _prm, kind="process",
             description="a trained ReasonFlux PRM (7B <extra_0> step tags or 1.5B scalar head): mean step score "
                         "+ alpha * trajectory score (Eq. 11), or the released RL code's whole-response score")
    register("reasonflux.rl", _released_rl, kind="outcome",
             description="the released ReasonFlux GRPO reward: float32(0.75 * official reasonflux.prm + 0.25 * "
                         "strict last-\\boxed{} match)")
    register("reasonflux.trajectory", _trajectory, kind="outcome",
             description="ReasonFlux template-guided trajectory reward: success rate of N policy solutions under a "
                         "judge-written template (math.accuracy)")


@hookimpl
def rewardkit_register_commands(register) -> None:
    from rewardkit_reasonflux import select  # standard library only at import time

    register("select", select.configure_select, select.run_select,
             help="offline data selection: score trajectory-response pairs (default reasonflux.prm, Eq. 11) "
                  "and keep the top k")
    register("bon", select.configure_bon, select.run_bon,
             help="Best-of-N: pick the best of N responses per question by any registered reward; accuracy vs "
                  "majority vote, random choice and oracle")
