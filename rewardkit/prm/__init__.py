"""Process-reward scoring: step scorer backends, aggregators, PRMReward, PRM training.

>>> from rewardkit.prm import PRMReward, TaggedScorer
>>> reward = PRMReward(TaggedScorer("path/to/prm"), reducer="min", splitter="blank_line")
>>> trainer = GRPOTrainer(model=..., reward_funcs=[reward], ...)      # doctest: +SKIP
"""

from rewardkit.prm.multimodal import prompt_images
from rewardkit.prm.reward import PRMReward, prm_reward, prompt_text
from rewardkit.prm.scorers import (
    BACKENDS,
    HEADS,
    HFStepScorer,
    PrefixScorer,
    RemoteScorer,
    StepScorer,
    TaggedScorer,
    make_scorer,
)
from rewardkit.reducers import REDUCERS, get_reducer, reduce_steps

AGGREGATORS = tuple(REDUCERS)

__all__ = [
    "AGGREGATORS",
    "BACKENDS",
    "HEADS",
    "HFStepScorer",
    "PRMReward",
    "PrefixScorer",
    "RemoteScorer",
    "StepScorer",
    "TaggedScorer",
    "get_reducer",
    "make_scorer",
    "prm_reward",
    "prompt_images",
    "prompt_text",
    "reduce_steps",
]
