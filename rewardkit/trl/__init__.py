"""The only place in rewardkit that knows TRL internals: attach rewards and hooks to trainers."""

from rewardkit.trl.build import (
    HOOK_STATE_FILE,
    TRLCompatError,
    build_trainer,
    check_trl_compat,
    load_hook_state,
)
from rewardkit.trl.hooks import TrainerHook
from rewardkit.trl.process_advantage import ProcessAdvantageHook, token_advantages

__all__ = ["HOOK_STATE_FILE", "ProcessAdvantageHook", "TRLCompatError", "TrainerHook", "build_trainer", "check_trl_compat",
           "load_hook_state", "token_advantages"]
