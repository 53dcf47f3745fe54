"""Deprecated import path: the hook moved to :mod:`rewardkit_flowgrpo.hooks`, the presets to
:mod:`rewardkit_flowgrpo.config` and the planners to :mod:`rewardkit_flowgrpo.planners`."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {"FlowBroadcastHook": "hooks", "flowgrpo_grpo_kwargs": "config", "TRLPlanner": "planners",
          "hf_planner_for": "planners"}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'rewardkit_flowgrpo.trainer' has no attribute {name!r}")
    warnings.warn(f"rewardkit_flowgrpo.trainer.{name} moved to rewardkit_flowgrpo.{module}.{name}",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(f"rewardkit_flowgrpo.{module}"), name)
