"""The only place in rewardkit that knows TRL internals: attach rewards and hooks to trainers.

Names load lazily so that plugins can subclass :class:`TrainerHook` at import time without
importing torch, transformers or TRL (listing plugins must stay cheap).
"""

from __future__ import annotations

from rewardkit.lazy import lazy_exports
from rewardkit.trl.hooks import TrainerHook

_LAZY = {
    "HOOK_STATE_FILE": "rewardkit.trl.build",
    "HookStateError": "rewardkit.trl.build",
    "read_hook_state": "rewardkit.trl.build",
    "save_state": "rewardkit.trl.hook_state",
    "load_state": "rewardkit.trl.hook_state",
    "TRLCompatError": "rewardkit.trl.compat",
    "build_trainer": "rewardkit.trl.build",
    "check_trl_compat": "rewardkit.trl.compat",
    "load_hook_state": "rewardkit.trl.build",
    "generate_completions": "rewardkit.trl.generation",
    "ProcessAdvantageHook": "rewardkit.trl.process_advantage",
    "token_advantages": "rewardkit.trl.process_advantage",
    "RewardSetModel": "rewardkit.trl.reward_model",
    "prepare_reward_model": "rewardkit.trl.placement",
    "lockstep_forwards": "rewardkit.trl.placement",
    "idle_forward": "rewardkit.trl.placement",
    "sharded_run": "rewardkit.trl.placement",
    "whole_model_loading": "rewardkit.trl.placement",
    "process_device": "rewardkit.trl.placement",
    "zero_stage": "rewardkit.trl.placement",
    "is_sharded": "rewardkit.trl.placement",
    "check_world_size": "rewardkit.trl.placement",
    "LaunchError": "rewardkit.trl.placement",
    "machine_defaults": "rewardkit.trl.launch",
    "launch_state": "rewardkit.trl.launch",
    "end_run": "rewardkit.trl.launch",
    "release_trainer": "rewardkit.trl.launch",
}

__all__ = ["TrainerHook", *_LAZY]


__getattr__ = lazy_exports(__name__, _LAZY)
