"""Presets that reproduce S²R's stage-2 RL with TRL 1.16 (paper §4, Tab. 9, §D.2).

Every preset is read through a function that returns a fresh kwargs dict, ``overrides`` applied
last (an unknown preset is an error that lists the known ones):

* :func:`grpo_kwargs` — ``GRPOConfig`` kwargs. ``"paper"`` (process level): for ``s2r.process`` +
  ``s2r.process_advantage``; the hook's advantages replace GRPO's, so ``scale_rewards`` only
  affects logs, and ``loss_type="grpo"`` with the hook's ``weighting="action"`` averages over
  actions like the code's per-segment loss. ``"paper_outcome"``: for ``s2r.outcome`` +
  ``s2r.outcome_rloo``: RLOO advantage (``scale_rewards="none"`` then ×M/(M−1)), sequence-level
  length-normalised ratio (``importance_sampling_level="sequence"``) and every trajectory weighted
  equally (``loss_type="grpo"``) — S²R's ratio and weighting; KL, when β>0, is GRPO's per-token
  k3 loss term instead of reward shaping, so β defaults to 0 there.
* :func:`rloo_kwargs` — ``RLOOConfig`` kwargs (``"paper"``, outcome level): leave-one-out baseline
  over the other 3 samples, KL as sequence-level reward shaping with the k1 estimator on rollout
  log-probs (exactly S²R's advantage), no advantage normalisation. Differs from S²R in the ratio:
  TRL's RLOO uses the summed (not length-normalised) sequence log-ratio.
* :func:`reward_kwargs` / :func:`hook_kwargs` — arguments of ``get_reward("s2r.process" |
  "s2r.outcome", ...)`` and ``get_hook("s2r.process_advantage", ...)``: ``"paper"`` (group
  baseline, per-action weighting) or ``"code"`` (the released code's scoring: running baseline over
  its context whitelist, ``mode="code"`` rewards).

Common to the paper's runs: n=4 samples per prompt, temperature 0.7, top_p 1, lr 5e-7, warmup 5,
weight decay 0, grad clip 1.0, clip ε=0.2, one pass per rollout batch. β is 0.01 for
Qwen2.5-Math-7B outcome-level and 0.05 for process-level (0.05 for Llama/Qwen2 in both).
"""

from __future__ import annotations

from typing import Any

_COMMON: dict[str, Any] = dict(num_generations=4, temperature=0.7, top_p=1.0, learning_rate=5e-7, warmup_steps=5,
                               weight_decay=0.0, max_grad_norm=1.0, epsilon=0.2, num_iterations=1)

GRPO_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(_COMMON, beta=0.05, scale_rewards="none", loss_type="grpo"),
    "paper_outcome": dict(_COMMON, beta=0.0, scale_rewards="none", importance_sampling_level="sequence",
                          loss_type="grpo"),
}
RLOO_PRESETS: dict[str, dict[str, Any]] = {"paper": dict(_COMMON, beta=0.01, normalize_advantages=False)}
REWARD_PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "code": dict(mode="code")}
HOOK_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(baseline="group", weighting="action", markers="action"),
    "code": dict(baseline="running", min_count=10, context_keys="code", split="code", weighting="action"),
}


def _preset(table: dict[str, dict[str, Any]], what: str, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if preset not in table:
        raise ValueError(f"unknown S2R {what} preset {preset!r}; known: {sorted(table)}")
    return {**table[preset], **overrides}


def grpo_kwargs(preset: str = "paper", **overrides: Any) -> dict[str, Any]:
    """``GRPOConfig`` kwargs: ``"paper"`` (process level) or ``"paper_outcome"``."""
    return _preset(GRPO_PRESETS, "GRPOConfig", preset, overrides)


def rloo_kwargs(preset: str = "paper", **overrides: Any) -> dict[str, Any]:
    """``RLOOConfig`` kwargs of the outcome-level run (``"paper"``)."""
    return _preset(RLOO_PRESETS, "RLOOConfig", preset, overrides)


def reward_kwargs(preset: str = "paper", **overrides: Any) -> dict[str, Any]:
    """Arguments of ``s2r.process`` / ``s2r.outcome``: ``"paper"`` or ``"code"`` (``mode="code"``)."""
    return _preset(REWARD_PRESETS, "reward", preset, overrides)


def hook_kwargs(preset: str = "paper", **overrides: Any) -> dict[str, Any]:
    """Arguments of ``s2r.process_advantage``: ``"paper"`` or ``"code"`` (the released trainer's
    running baseline and token rewards; goes with :func:`reward_kwargs` ``("code")``)."""
    return _preset(HOOK_PRESETS, "process_advantage hook", preset, overrides)
