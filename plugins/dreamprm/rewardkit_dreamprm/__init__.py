"""DreamPRM and DreamPRM-1.5 for rewardkit: domain-/instance-reweighted PRMs trained bi-level.

>>> from rewardkit_dreamprm import DreamPRMTrainer, DreamPRMConfig, ValueHeadPRM, make_toy
"""

from rewardkit_dreamprm.bon import best_of_n_eval, select_best
from rewardkit_dreamprm.models import GenerativePRM, StepOutputs, ValueHeadPRM
from rewardkit_dreamprm.objectives import aggregate, lower_losses, meta_losses, safe_logodds
from rewardkit_dreamprm.reward import DreamPRMReward, DreamPRMScorer, load_prm
from rewardkit_dreamprm.steps import Chain, make_chain, split_dreamprm, split_heuristic
from rewardkit_dreamprm.toy import make_toy
from rewardkit_dreamprm.trainer import DreamPRMConfig, DreamPRMTrainer, LowerExample, MetaExample
from rewardkit_dreamprm.weights import DomainWeights, InstanceNet, InstanceTable, UniformWeights

__all__ = ["Chain", "DomainWeights", "DreamPRMConfig", "DreamPRMReward", "DreamPRMScorer", "DreamPRMTrainer",
           "GenerativePRM", "InstanceNet", "InstanceTable", "LowerExample", "MetaExample", "StepOutputs",
           "UniformWeights", "ValueHeadPRM", "aggregate", "best_of_n_eval", "load_prm", "lower_losses",
           "make_chain", "make_toy", "meta_losses", "safe_logodds", "select_best", "split_dreamprm",
           "split_heuristic"]
