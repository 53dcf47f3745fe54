"""GRPOConfig presets of RewardMap: ``GRPOConfig(**grpo_kwargs("paper"), output_dir=..., ...)``.

Batch sizes are left to the caller (they depend on the number of processes): the paper trains on
16 prompts per optimiser step, one optimiser step per generation batch.
"""

from __future__ import annotations

from typing import Any

# RewardMap §5.1 and the released scripts/reward_map.yaml / reward_map.sh (fscdc/RewardMap): GRPO
# with group-normalised advantages, AdamW at a constant 1e-6, temperature 1.0, clip 0.2, responses
# up to 2048 tokens, one pass over the curriculum-ordered data
_COMMON: dict[str, Any] = {
    "learning_rate": 1e-6,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "temperature": 1.0,
    "top_p": 1.0,
    "epsilon": 0.2,
    "num_iterations": 1,
    "max_completion_length": 2048,
    "scale_rewards": "group",      # (r - mean) / std per group, as verl's GRPO; it cancels W (see docs)
    "loss_type": "grpo",           # token mean per sequence: the closest TRL loss to verl's
    "num_train_epochs": 1,
}

PRESETS: dict[str, dict[str, Any]] = {
    # the paper: group size 8, KL coefficient 1e-3
    "paper": {**_COMMON, "num_generations": 8, "beta": 1e-3},
    # the shell script that launched the released runs: group size 4, KL 1e-2, weight decay 1e-2, grad-norm 1.0
    "code": {**_COMMON, "num_generations": 4, "beta": 1e-2, "weight_decay": 1e-2, "max_grad_norm": 1.0},
}


def grpo_kwargs(preset: str = "paper", **overrides: Any) -> dict[str, Any]:
    """GRPOConfig keyword arguments of ``preset`` (``"paper"`` or ``"code"``), updated with ``overrides``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return {**PRESETS[preset], **overrides}
