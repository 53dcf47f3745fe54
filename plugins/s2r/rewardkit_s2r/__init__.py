"""S²R for rewardkit: self-verification and self-correction via SFT then RL (arXiv 2502.12853).

* :mod:`rewardkit_s2r.plugin` — registration: ``s2r.outcome``, ``s2r.process``, the
  ``s2r.process_advantage`` and ``s2r.outcome_rloo`` hooks, the ``s2r-data`` command;
* :mod:`rewardkit_s2r.rewards` — the reward classes; :mod:`rewardkit_s2r.hooks` — the hook classes;
* :mod:`rewardkit_s2r.config` — trainer and reward/hook presets (``grpo_kwargs``, ``rloo_kwargs``, ...);
* :mod:`rewardkit_s2r.parse` — trajectory format, parser on text and token ids;
* :mod:`rewardkit_s2r.scoring` — per-action rewards and behaviour metrics of a trajectory;
* :mod:`rewardkit_s2r.grading` — attempt correctness; :mod:`rewardkit_s2r.advantages` — the advantage math;
* :mod:`rewardkit_s2r.code` — the released code's scoring (``mode="code"``);
* :mod:`rewardkit_s2r.sft` — the stage-1 SFT collator with the action mask;
* :mod:`rewardkit_s2r.evaluation` — greedy trajectories on held-out questions, behaviour metrics;
* :mod:`rewardkit_s2r.stage0` — stage-0 data construction (``rewardkit s2r-data``);
* :mod:`rewardkit_s2r.backends` — local-model and OpenAI-compatible generation backends.

Names load on first use, so importing the package imports no torch, transformers or TRL.
"""

from __future__ import annotations

from rewardkit import lazy_exports

# eager, and light (only the standard library): the function ``parse`` shares its name with the module
# ``rewardkit_s2r.parse``, which a lazy name would lose to once the module is imported
from rewardkit_s2r.parse import parse as parse

_LAZY: dict[str, tuple[str, str]] = {
    **{n: ("rewardkit_s2r.config", n) for n in ("grpo_kwargs", "rloo_kwargs", "reward_kwargs", "hook_kwargs")},
    **{n: ("rewardkit_s2r.parse", n) for n in ("Action", "Markers", "S2RTrajectory", "format_trajectory", "parse_verdict",
                                                "split_token_ids")},
    **{n: ("rewardkit_s2r.rewards", n) for n in ("SCORED", "S2ROutcomeReward", "S2RProcessReward")},
    **{n: ("rewardkit_s2r.scoring", n) for n in ("ScoredTrajectory", "score_trajectory", "trajectory_metrics")},
    **{n: ("rewardkit_s2r.hooks", n) for n in ("S2RProcessAdvantageHook", "S2ROutcomeRLOOHook")},
    "BaselineTable": ("rewardkit_s2r.advantages", "BaselineTable"),
    "evaluate_policy": ("rewardkit_s2r.evaluation", "evaluate_policy"),
    **{n: ("rewardkit_s2r.sft", n) for n in ("S2RSFTCollator", "s2r_token_mask")},
    # old names (documented before the plugin contract)
    "S2ROutcome": ("rewardkit_s2r.rewards", "S2ROutcomeReward"),
    "S2RProcess": ("rewardkit_s2r.rewards", "S2RProcessReward"),
    "S2RProcessAdvantage": ("rewardkit_s2r.hooks", "S2RProcessAdvantageHook"),
    "S2ROutcomeRLOO": ("rewardkit_s2r.hooks", "S2ROutcomeRLOOHook"),
    **{n: ("rewardkit_s2r.configs", n) for n in ("CODE_OUTCOME_REWARD", "CODE_PROCESS_HOOK", "CODE_PROCESS_REWARD",
                                                  "PAPER_GRPO_OUTCOME", "PAPER_GRPO_PROCESS", "PAPER_RLOO_OUTCOME")},
}

__all__ = sorted([*_LAZY, "parse"])


__getattr__ = lazy_exports(__name__, {name: f"{module}:{attr}" for name, (module, attr) in _LAZY.items()})
