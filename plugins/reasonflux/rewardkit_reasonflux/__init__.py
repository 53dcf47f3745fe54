"""ReasonFlux-PRM (Zou et al., arXiv 2506.18896) for rewardkit.

Rewards: ``reasonflux.quality``, ``reasonflux.coherence``, ``reasonflux.alignment``,
``reasonflux.step``, ``reasonflux.trajectory``, ``reasonflux.prm``, ``reasonflux.rl``
(:mod:`rewardkit_reasonflux.rewards`); GRPO mixing presets (:mod:`rewardkit_reasonflux.config`),
PRM training (:class:`ReasonFluxPRMTrainer`), offline selection (:func:`select_top_k`) and
Best-of-N (:func:`best_of_n`), also as ``rewardkit select`` / ``rewardkit bon``.

Names load lazily: importing the package imports neither torch, transformers nor TRL.
"""

from __future__ import annotations

from importlib.metadata import version as _version

from rewardkit import lazy_exports

__version__ = _version("rewardkit-reasonflux")  # the version lives in pyproject.toml alone

_LAZY = {
    "AlignmentReward": "rewardkit_reasonflux.rewards",
    "CoherenceReward": "rewardkit_reasonflux.rewards",
    "QualityReward": "rewardkit_reasonflux.rewards",
    "ReasonFluxPRM": "rewardkit_reasonflux.rewards",
    "ReasonFluxPRMReward": "rewardkit_reasonflux.rewards",
    "ReleasedRLReward": "rewardkit_reasonflux.rewards",
    "StepReward": "rewardkit_reasonflux.rewards",
    "TrajectoryReward": "rewardkit_reasonflux.rewards",
    "MixPreset": "rewardkit_reasonflux.config",
    "get_preset": "rewardkit_reasonflux.config",
    "grpo_kwargs": "rewardkit_reasonflux.config",
    "grpo_mix": "rewardkit_reasonflux.config",
    "grpo_rewards": "rewardkit_reasonflux.config",
    "Embedder": "rewardkit_reasonflux.embed",
    "default_encoder_path": "rewardkit_reasonflux.embed",
    "CachedGenerator": "rewardkit_reasonflux.judge",
    "CallableBackend": "rewardkit_reasonflux.judge",
    "Judge": "rewardkit_reasonflux.judge",
    "JudgeBackend": "rewardkit_reasonflux.judge",
    "JudgeError": "rewardkit_reasonflux.judge",
    "JudgeTimeoutError": "rewardkit_reasonflux.judge",
    "OpenAIBackend": "rewardkit_reasonflux.judge",
    "TransformersBackend": "rewardkit_reasonflux.judge",
    "parse_score": "rewardkit_reasonflux.judge",
    "ReasonSample": "rewardkit_reasonflux.sample",
    "SampleParser": "rewardkit_reasonflux.sample",
    "best_of_n": "rewardkit_reasonflux.select",
    "select_top_k": "rewardkit_reasonflux.select",
    "ReasonFluxPRMTrainer": "rewardkit_reasonflux.training",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
