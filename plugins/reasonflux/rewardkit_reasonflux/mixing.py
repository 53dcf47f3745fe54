"""Old import path of the GRPO mixing recipe: now :mod:`rewardkit_reasonflux.config` (presets) and
:mod:`rewardkit_reasonflux.rewards` (``ReleasedRLReward``). Kept for code written against the
documented ``rewardkit_reasonflux.mixing`` names; importing it warns."""

from __future__ import annotations

import warnings

from rewardkit_reasonflux.config import OFFICIAL_BETA, grpo_mix, grpo_rewards
from rewardkit_reasonflux.rewards import ReleasedRLReward

warnings.warn("rewardkit_reasonflux.mixing is now rewardkit_reasonflux.config (grpo_mix, grpo_rewards, "
              "grpo_kwargs) and rewardkit_reasonflux.rewards (ReleasedRLReward)", DeprecationWarning, stacklevel=2)

__all__ = ["OFFICIAL_BETA", "ReleasedRLReward", "grpo_mix", "grpo_rewards"]
