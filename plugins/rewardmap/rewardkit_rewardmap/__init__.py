"""RewardMap for rewardkit: route and ReasonMap-Plus rewards, curriculum hook, synthetic maps.

Names load lazily, so importing the package (and listing plugins) imports no torch.
"""

from __future__ import annotations

from importlib.metadata import version as _version

from rewardkit import lazy_exports

__version__ = _version("rewardkit-rewardmap")  # the version lives in pyproject.toml alone

_LAZY = {
    "MapReward": "rewardkit_rewardmap.rewards",
    "PlusReward": "rewardkit_rewardmap.rewards",
    "RouteReward": "rewardkit_rewardmap.rewards",
    "CurriculumHook": "rewardkit_rewardmap.hooks",
    "grpo_kwargs": "rewardkit_rewardmap.config",
    "make_dataset": "rewardkit_rewardmap.data",
    "load_reasonmap": "rewardkit_rewardmap.data",
}

__all__ = [*_LAZY, "__version__"]


__getattr__ = lazy_exports(__name__, _LAZY)
