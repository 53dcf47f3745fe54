"""ReasonFlux-PRM (Zou et al., arXiv 2506.18896) for rewardkit.

Rewards: ``reasonflux.quality``, ``reasonflux.coherence``, ``reasonflux.alignment``,
``reasonflux.step``, ``reasonflux.trajectory``, ``reasonflux.prm``; GRPO mixing recipe
(:func:`grpo_mix`), PRM training (:class:`ReasonFluxPRMTrainer`), offline selection
(:func:`select_top_k`) and Best-of-N (:func:`best_of_n`), also as ``rewardkit select`` / ``rewardkit bon``.
"""

from __future__ import annotations

from importlib.metadata import version as _version

__version__ = _version("rewardkit-reasonflux")  # the version lives in pyproject.toml alone

from rewardkit_reasonflux.embed import Embedder, default_encoder_path
from rewardkit_reasonflux.judge import (
    CachedGenerator,
    CallableBackend,
    Judge,
    JudgeBackend,
    JudgeError,
    JudgeTimeoutError,
    OpenAIBackend,
    TransformersBackend,
    parse_score,
)
from rewardkit_reasonflux.rewards import (
    AlignmentReward,
    CoherenceReward,
    QualityReward,
    StepReward,
    TrajectoryReward,
)
from rewardkit_reasonflux.sample import ReasonSample, SampleParser

__all__ = [
    "AlignmentReward",
    "CachedGenerator",
    "CallableBackend",
    "CoherenceReward",
    "Embedder",
    "Judge",
    "JudgeBackend",
    "JudgeError",
    "JudgeTimeoutError",
    "OpenAIBackend",
    "QualityReward",
    "ReasonSample",
    "SampleParser",
    "StepReward",
    "TrajectoryReward",
    "TransformersBackend",
    "default_encoder_path",
    "parse_score",
]
