"""rewardkit: reward plugins from RL post-training papers, composed onto TRL trainers."""

from __future__ import annotations

from importlib.metadata import version as _version

__version__ = _version("rewardkit")  # the version lives in pyproject.toml alone

from rewardkit.compose import RewardSet, compose, compose_from_yaml
from rewardkit.hookspecs import hookimpl
from rewardkit.plugins import get_hook, get_reward, list_hooks, list_plugins, list_rewards
from rewardkit.reward import (
    STEP_SCORES,
    AsyncReward,
    Batch,
    CallRecord,
    FunctionReward,
    ProcessReward,
    Reward,
    RewardInputError,
    Sample,
    StepScores,
)

__all__ = [
    "STEP_SCORES",
    "AsyncReward",
    "Batch",
    "CallRecord",
    "FunctionReward",
    "ProcessReward",
    "Reward",
    "RewardInputError",
    "RewardSet",
    "Sample",
    "StepScores",
    "__version__",
    "compose",
    "compose_from_yaml",
    "get_hook",
    "get_reward",
    "hookimpl",
    "list_hooks",
    "list_plugins",
    "list_rewards",
]
