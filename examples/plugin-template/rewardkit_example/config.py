"""The plugin's configuration: the GRPOConfig keyword arguments its method needs, built one way."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # short completions are enough to mention a keyword
    "default": {"max_completion_length": 32, "num_generations": 4},
}


def grpo_kwargs(preset: str = "default", **overrides: Any) -> dict[str, Any]:
    """``GRPOConfig`` keyword arguments of ``preset``, with ``overrides`` on top."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return {**PRESETS[preset], **overrides}
