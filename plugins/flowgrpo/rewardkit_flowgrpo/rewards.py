"""``flowgrpo.outcome``: the final-answer judge of a Flow-GRPO trajectory, broadcast to its turns.

AgentFlow's reward (paper Eq. 4, App. E.3) is a binary GPT-4o judgement of the generator's final
answer against the ground truth; every planner turn of the trajectory receives it. The judges
(``"exact"``, ``"math"``, ``"llm"`` or any ``judge(question, answer, gold) -> bool | float``) are in
:mod:`rewardkit_flowgrpo.judges`.

A judge that raises or answers unparseably gives 0.0 and is counted (``rewardkit/<name>/judge_errors``),
as AgentFlow fills missing rewards with 0. A trajectory that ended on a tool/module error or a timeout
gets 0.0 and is counted (``tool_errors``, ``timeouts``). The judge runs once per trajectory; its value
is returned on every row (turn slot) of that trajectory.

Columns read: ``flowgrpo_answer`` and the gold column (``answer`` by default); optional
``flowgrpo_traj_id``, ``flowgrpo_error``, ``flowgrpo_timed_out``, ``flowgrpo_is_pad``,
``flowgrpo_num_turns`` (all written by :class:`~rewardkit_flowgrpo.rollout.FlowRollout`).

Shared with hooks (``reward.last_call``): ``values`` (one per row) and the detail
``flowgrpo_traj_id`` (the trajectory each value belongs to), which ``flowgrpo.broadcast`` checks
against its own rows before it uses the values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewardkit import Batch, Reward, RewardInputError
from rewardkit_flowgrpo.judges import make_judge

TRAJ_ID = "flowgrpo_traj_id"


class FlowOutcomeReward(Reward):
    """Binary trajectory outcome, judged once per trajectory and broadcast to its turn rows.

    Args:
        judge: ``"exact"`` (default), ``"math"``, ``"llm"`` or ``judge(question, answer, gold)``.
        judge_model: the LLM judge's module (``judge="llm"``).
        gold_column: the dataset column holding the ground truth.
        answer_column: the column holding the generator's final answer (the rollout writes it).
        verdict: how the LLM judge's reply is read, ``"text"`` or ``"json"`` (AgentFlow's structured output).
    """

    kind = "multi_turn"

    def __init__(self, *, judge: str | Callable[..., Any] = "exact", judge_model: Any = None,
                 gold_column: str = "answer", answer_column: str = "flowgrpo_answer", verdict: str = "text",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.judge_name = judge if isinstance(judge, str) else getattr(judge, "__name__", type(judge).__name__)
        self.judge = make_judge(judge, judge_model, verdict)
        self.gold_column = gold_column
        self.answer_column = answer_column

    def judge_one(self, question: str, answer: str, gold: Any) -> tuple[float, bool]:
        """(reward, judge_failed): a failed judge gives 0.0."""
        try:
            value = float(self.judge(question, answer, gold))
        except Exception:
            return 0.0, True
        if value != value:  # NaN
            return 0.0, True
        return value, False

    def _prepare(self, prompts, completions, completion_ids, kwargs):
        batch, preset = super()._prepare(prompts, completions, completion_ids, kwargs)
        # padding rows carry an empty completion by construction: they are not "empty" planner outputs
        pads = batch.columns.get("flowgrpo_is_pad")
        if pads is not None:
            for i, pad in enumerate(pads):
                if pad and not batch.texts[i].strip():
                    batch.counts["empty"] -= 1
        return batch, preset

    def score_batch(self, batch: Batch) -> list[float | None]:
        cols = batch.columns
        for need in (self.answer_column, self.gold_column):
            if need not in cols:
                raise RewardInputError(
                    f"reward {self.name!r} needs column {need!r} (columns passed: {sorted(cols) or 'none'}); "
                    "use it with rewardkit_flowgrpo.FlowRollout, or pass the columns yourself")
        n = len(batch)
        traj_ids = cols.get(TRAJ_ID, list(range(n)))
        errors = cols.get("flowgrpo_error", [""] * n)
        timeouts = cols.get("flowgrpo_timed_out", [False] * n)
        cache: dict[Any, float] = {}
        stats = {"trajectories": 0, "judge_errors": 0, "tool_errors": 0, "timeouts": 0, "success": 0.0}
        values: list[float | None] = []
        for i in range(n):
            t = traj_ids[i]
            if t not in cache:
                stats["trajectories"] += 1
                if errors[i]:
                    cache[t] = 0.0
                    stats["tool_errors"] += 1
                    stats["timeouts"] += int(bool(timeouts[i]))
                else:
                    question = batch.prompts[i] if isinstance(batch.prompts[i], str) else str(batch.prompts[i])
                    value, failed = self.judge_one(question, cols[self.answer_column][i], cols[self.gold_column][i])
                    stats["judge_errors"] += int(failed)
                    cache[t] = value
                stats["success"] += cache[t]
            values.append(cache[t])
        batch.share(TRAJ_ID, traj_ids)
        batch.extras["stats"] = stats
        batch.counts.update({k: int(v) for k, v in stats.items() if k in ("judge_errors", "tool_errors", "timeouts")})
        return values

    def log_components(self, batch: Batch) -> None:
        stats = batch.extras.get("stats")
        if not stats:
            return
        n = max(stats["trajectories"], 1)
        # "timeouts" is one of the base class's counters: it is logged from batch.counts already
        for key in ("judge_errors", "tool_errors"):
            batch.log_metric(f"rewardkit/{self.name}/{key}", float(stats[key]))
        batch.log_metric(f"rewardkit/{self.name}/success", stats["success"] / n)
        cols = batch.columns
        if "flowgrpo_num_turns" in cols and TRAJ_ID in cols:
            turns = {t: k for t, k in zip(cols[TRAJ_ID], cols["flowgrpo_num_turns"])}
            batch.log_metric(f"rewardkit/{self.name}/turns_mean", sum(turns.values()) / max(len(turns), 1))


FlowOutcome = FlowOutcomeReward  # the documented name before the plugin contract's ...Reward suffix
