"""RewardMap for rewardkit: route and ReasonMap-Plus rewards, curriculum hook, synthetic maps."""

from rewardkit_rewardmap.rewards import MapReward, PlusReward, RouteReward

__all__ = ["MapReward", "PlusReward", "RouteReward"]
from importlib.metadata import version as _version

__version__ = _version("rewardkit-rewardmap")  # the version lives in pyproject.toml alone
