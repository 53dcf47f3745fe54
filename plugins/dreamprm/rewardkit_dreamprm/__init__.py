"""DreamPRM and DreamPRM-1.5 for rewardkit: domain-/instance-reweighted PRMs trained bi-level.

>>> from rewardkit_dreamprm import DreamPRMTrainer, DreamPRMConfig, ValueHeadPRM, make_toy

Names load lazily (on first use), so importing the package (as the plugin registry does) imports
no torch, transformers or TRL.
"""

from __future__ import annotations

from rewardkit import lazy_exports

_LAZY = {
    "best_of_n_eval": "rewardkit_dreamprm.bon",
    "select_best": "rewardkit_dreamprm.bon",
    "DreamPRMConfig": "rewardkit_dreamprm.config",
    "bilevel_kwargs": "rewardkit_dreamprm.config",
    "BilevelHook": "rewardkit_dreamprm.hooks",
    "GenerativePRM": "rewardkit_dreamprm.models",
    "StepOutputs": "rewardkit_dreamprm.models",
    "ValueHeadPRM": "rewardkit_dreamprm.models",
    "aggregate": "rewardkit_dreamprm.objectives",
    "lower_losses": "rewardkit_dreamprm.objectives",
    "meta_losses": "rewardkit_dreamprm.objectives",
    "safe_logodds": "rewardkit_dreamprm.objectives",
    "DreamPRMReward": "rewardkit_dreamprm.rewards",
    "DreamPRMScorer": "rewardkit_dreamprm.rewards",
    "load_prm": "rewardkit_dreamprm.rewards",
    "Chain": "rewardkit_dreamprm.steps",
    "make_chain": "rewardkit_dreamprm.steps",
    "split_dreamprm": "rewardkit_dreamprm.steps",
    "split_heuristic": "rewardkit_dreamprm.steps",
    "make_toy": "rewardkit_dreamprm.toy",
    "DreamPRMTrainer": "rewardkit_dreamprm.trainer",
    "LowerExample": "rewardkit_dreamprm.trainer",
    "MetaExample": "rewardkit_dreamprm.trainer",
    "DomainWeights": "rewardkit_dreamprm.weights",
    "InstanceNet": "rewardkit_dreamprm.weights",
    "InstanceTable": "rewardkit_dreamprm.weights",
    "UniformWeights": "rewardkit_dreamprm.weights",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)

