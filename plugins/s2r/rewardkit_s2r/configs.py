"""Deprecated: the presets moved to :mod:`rewardkit_s2r.config` (``grpo_kwargs``, ``rloo_kwargs``,
``reward_kwargs``, ``hook_kwargs``). The old dict names stay importable from here with a warning."""

from __future__ import annotations

import warnings

from rewardkit_s2r.config import grpo_kwargs, hook_kwargs, reward_kwargs, rloo_kwargs

warnings.warn("rewardkit_s2r.configs is deprecated: use rewardkit_s2r.config (grpo_kwargs('paper'), "
              "rloo_kwargs(), reward_kwargs('code'), hook_kwargs('code'), ...)", DeprecationWarning, stacklevel=2)

PAPER_RLOO_OUTCOME = rloo_kwargs("paper")
PAPER_GRPO_OUTCOME = grpo_kwargs("paper_outcome")
PAPER_GRPO_PROCESS = grpo_kwargs("paper")
PAPER_PROCESS_HOOK = hook_kwargs("paper")
CODE_PROCESS_HOOK = hook_kwargs("code")
CODE_PROCESS_REWARD = reward_kwargs("code")
CODE_OUTCOME_REWARD = reward_kwargs("code")
