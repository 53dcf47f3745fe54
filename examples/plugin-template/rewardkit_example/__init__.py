"""A minimal rewardkit plugin laid out as every plugin is: ``plugin.py`` (registration only),
``rewards.py``, ``hooks.py``, ``config.py``. Importing it imports no torch, transformers or TRL."""

from __future__ import annotations

from rewardkit import lazy_exports

_LAZY = {"KeywordReward": "rewardkit_example.rewards", "RolloutCounterHook": "rewardkit_example.hooks",
         "grpo_kwargs": "rewardkit_example.config"}
__all__ = list(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
