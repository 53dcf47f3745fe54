"""RewardMap for rewardkit: route and ReasonMap-Plus rewards, curriculum hook, synthetic maps."""

from rewardkit_rewardmap.rewards import MapReward, PlusReward, RouteReward

__all__ = ["MapReward", "PlusReward", "RouteReward"]
__version__ = "0.1.0"
