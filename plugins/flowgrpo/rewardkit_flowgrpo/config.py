"""GRPOConfig presets for Flow-GRPO: :func:`grpo_kwargs` returns the keyword arguments.

``GRPOConfig(output_dir=..., **grpo_kwargs("paper", group_size=8, max_turns=3))``. The presets are
``"paper"`` (arXiv 2510.05592) and ``"code"`` (AgentFlow's train/config.yaml on verl 0.5.0); see the
table in docs/methods/flowgrpo.md.
"""

from __future__ import annotations

import warnings
from typing import Any

PRESETS = ("paper", "code")


def grpo_kwargs(preset: str = "paper", *, group_size: int = 8, max_turns: int = 3, queries_per_device: int = 1,
                loss_norm: str | None = None, **overrides: Any) -> dict[str, Any]:
    """GRPOConfig keyword arguments for Flow-GRPO.

    Always: ``num_generations = G * T_max`` and ``per_device_train_batch_size = queries_per_device *
    G * T_max`` (whole queries per rank). ``preset="paper"``: ``loss_type="grpo"`` (Eq. 10 with the
    hook's ``loss_norm="paper"``), symmetric ε = 0.2, β = 0.001, temperature 0.5. ``preset="code"``
    (AgentFlow's train/config.yaml on verl 0.5.0): ``loss_type="bnpo"`` (verl's ``token-mean``: a token
    mean per micro-batch divided by the accumulation steps; verl's micro-batches are 4 shuffled turn
    samples, TRL's are this rank's rows of whole queries), ε = 0.2 / 0.3 (clip-higher), dual-clip δ = 3,
    β = 0.001, temperature 0.7. Pass ``loss_type="dapo"`` for a token mean over the whole step.

    With ``steps_per_generation == gradient_accumulation_steps`` (TRL's default) and
    ``num_iterations=1`` the ratio is exactly 1 and clipping never acts; set
    ``steps_per_generation`` above ``gradient_accumulation_steps`` (verl runs ~8-12 updates per
    rollout batch) to reproduce the code's off-policy mini-batches.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    loss_norm = loss_norm or ("paper" if preset == "paper" else "token_mean")
    rows = group_size * max_turns
    kw: dict[str, Any] = dict(num_generations=rows, per_device_train_batch_size=queries_per_device * rows,
                              beta=0.001, epsilon=0.2, scale_rewards="none",
                              loss_type="grpo" if loss_norm == "paper" else "bnpo")
    if preset == "paper":
        kw.update(temperature=0.5)
    else:
        kw.update(epsilon_high=0.3, delta=3.0, temperature=0.7)
    kw.update(overrides)
    return kw


def flowgrpo_grpo_kwargs(group_size: int = 8, max_turns: int = 3, *, queries_per_device: int = 1,
                         preset: str = "paper", loss_norm: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The name before the plugin contract: ``grpo_kwargs(preset, group_size=..., max_turns=...)``."""
    warnings.warn("rewardkit_flowgrpo.flowgrpo_grpo_kwargs is renamed grpo_kwargs(preset, group_size=..., "
                  "max_turns=...)", DeprecationWarning, stacklevel=2)
    return grpo_kwargs(preset, group_size=group_size, max_turns=max_turns, queries_per_device=queries_per_device,
                       loss_norm=loss_norm, **overrides)
