"""RewardMap's trainer hook: the multi-stage curriculum on TRL's GRPO trainer (``rewardmap.curriculum``).

The curriculum itself (stage order, gating, checkpoint state, the gated sampler) is
:class:`rewardkit_rewardmap.curriculum.Curriculum`; this hook connects it to the trainer:

* :meth:`CurriculumHook.setup` finds the RewardMap rewards the gate reads;
* :meth:`CurriculumHook.train_sampler` replaces TRL's shuffling sampler with one that reads prompts
  in curriculum order while keeping TRL's ``RepeatSampler`` layout;
* :meth:`CurriculumHook.after_rollout` notes the stage of each generation batch and the stage's mean
  accuracy (or reward) from the RewardMap reward's shared components, gathered across processes so
  every rank makes the same decision, and logs ``curriculum/stage`` (and ``curriculum/stage_metric``,
  ``curriculum/gate_stage``) with the trainer's metrics.
"""

from __future__ import annotations

from typing import Any

from rewardkit.trl import TrainerHook
from rewardkit_rewardmap.curriculum import (
    INDEX_COLUMN,
    STAGE_COLUMN,
    Curriculum,
    CurriculumSampler,
    GatedCurriculumSampler,
)
from rewardkit_rewardmap.rewards import COMPONENTS, BaseMapReward


class CurriculumHook(Curriculum, TrainerHook):
    """``rewardmap.curriculum``: RewardMap's stage-by-stage prompt order (RewardMap §4.3) for GRPO.

    Takes the parameters of :class:`~rewardkit_rewardmap.curriculum.Curriculum` (``stages``,
    ``seed``, ``type_column``, ``threshold``, ``gate_metric``, ``gate_window``, ``max_passes``,
    ``replay``).
    """

    name = "rewardmap.curriculum"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._rewards: list[BaseMapReward] = []
        self.seen_indices: list[list[int]] = []  # local rows' curriculum_index per generation batch (not saved)

    def setup(self, trainer: Any) -> None:
        self._rewards = self.find_rewards(trainer, BaseMapReward)
        if self.gated and not self._rewards:
            raise ValueError("rewardmap.curriculum with a threshold gates on a RewardMap reward "
                             "(rewardmap.reward / .route / .plus); none is among the trainer's reward_funcs")

    def train_sampler(self, trainer: Any, dataset: Any, default: Any) -> Any:
        mini = trainer.num_generations
        chunk = trainer.args.generation_batch_size // mini
        repeat = trainer.num_iterations * trainer.args.steps_per_generation
        if not self.gated:
            return CurriculumSampler(len(dataset), mini, chunk, repeat)
        if not self.stage_rows:
            raise RuntimeError("rewardmap.curriculum: prepare_dataset was not called on this dataset "
                               "(build the trainer with rewardkit.trl.build_trainer)")
        return GatedCurriculumSampler(self, len(dataset), mini, chunk, repeat)

    def after_rollout(self, trainer: Any, inputs: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
        import torch

        model = getattr(trainer, "model", None)
        if model is not None and not model.training:
            return output  # an evaluation batch: not part of the curriculum
        stages = [int(r.get(STAGE_COLUMN, 0)) for r in inputs]
        self.seen_indices.append([int(r.get(INDEX_COLUMN, -1)) for r in inputs])
        local_stage = max(stages) if stages else 0
        total, count = 0.0, 0
        for reward in self._rewards:
            comps = reward.last_call.detail(COMPONENTS)
            if len(comps) != len(inputs):
                continue
            for s, c in zip(stages, comps):
                if c is not None and s == local_stage:
                    total += c.acc if self.gate_metric == "acc" else c.reward
                    count += 1
            break
        stats = torch.tensor([float(local_stage), total, float(count)], dtype=torch.float64)
        accelerator = getattr(trainer, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1:
            gathered = accelerator.gather(stats.to(accelerator.device)).view(-1, 3).cpu()
            stage = int(gathered[:, 0].max().item())
            keep = gathered[gathered[:, 0] == stage]
            total, count = float(keep[:, 1].sum().item()), int(keep[:, 2].sum().item())
        else:
            stage = local_stage
        self.record_rollout(stage, total / count if count else None)
        self.log_metrics(trainer, self.log_values())
        return output
