"""Plugin module named by the ``rewardkit`` entry point; it only registers things."""

from __future__ import annotations

from typing import Any

from rewardkit import Reward, Sample, hookimpl
from rewardkit.trl import TrainerHook


class KeywordReward(Reward):
    """Fraction of ``keywords`` that appear in the completion (case-insensitive)."""

    def __init__(self, *, keywords: tuple[str, ...] = ("answer",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not keywords:
            raise ValueError("keywords must not be empty")
        self.keywords = tuple(k.lower() for k in keywords)

    def score(self, sample: Sample) -> float:
        text = sample.text.lower()
        return sum(k in text for k in self.keywords) / len(self.keywords)


class RolloutCounter(TrainerHook):
    """Counts generation batches; its count is checkpointed and restored on resume."""

    def __init__(self) -> None:
        self.rollouts = 0

    def after_rollout(self, trainer, inputs, output):
        self.rollouts += 1
        return output

    def state_dict(self) -> dict[str, Any]:
        return {"rollouts": self.rollouts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollouts = int(state["rollouts"])


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("example.keyword", KeywordReward, kind="outcome",
             description="fraction of keywords present in the completion")


@hookimpl
def rewardkit_register_hooks(register) -> None:
    register("example.rollout_counter", RolloutCounter, description="counts generation batches (checkpointed)")
