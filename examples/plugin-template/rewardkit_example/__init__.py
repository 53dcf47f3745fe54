"""A minimal rewardkit plugin laid out as every plugin is: ``plugin.py`` (registration only),
``rewards.py``, ``hooks.py``, ``config.py``. Importing it imports no torch, transformers or TRL."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"KeywordReward": "rewardkit_example.rewards", "RolloutCounterHook": "rewardkit_example.hooks",
         "grpo_kwargs": "rewardkit_example.config"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'rewardkit_example' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
