"""The plugin's trainer hooks."""

from __future__ import annotations

from typing import Any

from rewardkit.trl import TrainerHook
from rewardkit_example.rewards import KeywordReward


class RolloutCounterHook(TrainerHook):
    """Counts generation batches and the rows where a keyword reward matched nothing; the counts are
    logged with the trainer's metrics, checkpointed, and restored on resume."""

    def __init__(self) -> None:
        self.rollouts = 0
        self.unmatched = 0

    def after_rollout(self, trainer: Any, inputs: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
        self.rollouts += 1
        for reward in self.find_rewards(trainer, KeywordReward):
            self.unmatched += sum(m == [] for m in reward.last_call.detail("matched"))
        self.log_metrics(trainer, {"example/rollouts": self.rollouts, "example/unmatched": self.unmatched})
        return output

    def state_dict(self) -> dict[str, Any]:
        return {"rollouts": self.rollouts, "unmatched": self.unmatched}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollouts = int(state["rollouts"])
        self.unmatched = int(state.get("unmatched", 0))
