"""RewardMap on a vision-language model: rendered (or released) maps as images, TRL GRPO on a VLM.

The rewards and the curriculum hook are the same as for text; what changes is the input. Rows made
by ``make_dataset(..., images=True)`` or ``load_reasonmap(..., with_images=True)`` hold a chat prompt
with an image placeholder and an ``images`` column; TRL's GRPOTrainer fills the placeholder, the
processor expands it into image tokens and the vision tower encodes the map. :func:`vlm_trainer`
builds that trainer (the processor passed explicitly, see :func:`rewardkit.testing.resolve_vlm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardkit import get_hook, get_reward
from rewardkit.testing import resolve_vlm
from rewardkit.vision import VisionTowerProbe
from rewardkit_rewardmap.data import make_dataset


def vlm_dataset(n_maps: int = 4, questions_per_map: int = 8, *, seed: int = 0, image_size: int = 224,
                short_names: bool = True, **kwargs: Any):
    """``make_dataset`` with rendered maps (``images=True``); the map is not described in text, so
    the model has to read the picture."""
    return make_dataset(n_maps, questions_per_map, seed=seed, images=True, image_size=image_size,
                        short_names=short_names, **kwargs)


def vlm_trainer(model: str | None, train_dataset: Any, args: Any, *, state: Any = None,
                rewards: Sequence[Any] | None = None, hook: Any = None, hooks: Sequence[Any] = (),
                **trainer_kwargs: Any):
    """A TRL ``GRPOTrainer`` on a VLM with the RewardMap reward and curriculum hook.

    ``model``: ``"tiny"`` (the offline tiny Qwen2.5-VL), a Hub id (``Qwen/Qwen2.5-VL-3B-Instruct``)
    or a path. ``rewards`` / ``hook`` default to ``[rewardmap.reward]`` / ``rewardmap.curriculum``.
    Returns ``(trainer, probe)``: the probe counts the vision tower's forward calls.
    """
    from trl import GRPOTrainer

    from rewardkit.trl import build_trainer

    path, processor, _ = resolve_vlm(model, state, seed=getattr(args, "seed", 0))
    rewards = list(rewards) if rewards is not None else [get_reward("rewardmap.reward")]
    hook = hook if hook is not None else get_hook("rewardmap.curriculum")
    trainer = build_trainer(GRPOTrainer, hooks=[hook, *hooks], model=path, reward_funcs=rewards, args=args,
                            train_dataset=train_dataset, processing_class=processor, **trainer_kwargs)
    return trainer, VisionTowerProbe(trainer.model)


__all__ = ["vlm_dataset", "vlm_trainer"]
