"""Flow-GRPO rollouts as a TRL ``rollout_func``: G trajectories per query, T_max turn slots each.

TRL's ``rollout_func(prompts, trainer)`` receives every prompt already repeated ``num_generations``
times and must return exactly one row per entry. Flow-GRPO produces a variable number of
turn-samples per trajectory, each with its own prompt (a fresh rendering of the memory), so:

* set ``num_generations = G * T_max`` (:func:`rewardkit_flowgrpo.grpo_kwargs` does it);
* each run of ``G * T_max`` identical prompts is one query: we run G trajectories for it and return
  T_max rows per trajectory, the real planner turns first and then padding rows;
* a padding row is a one-token completion (EOS) with ``env_mask`` 0, so it carries no gradient; every
  rank holds the same static shapes whatever the T_i.

Per row we return ``prompt_ids`` (the planner prompt of that turn), ``completion_ids`` (the sampler's
ids), ``logprobs`` (the sampler's, when the backend gives them) and extra columns that TRL merges into
the rows and passes to reward functions: ``flowgrpo_query_id, flowgrpo_traj_id, flowgrpo_turn,
flowgrpo_num_turns, flowgrpo_max_turns, flowgrpo_is_pad, flowgrpo_answer, flowgrpo_error,
flowgrpo_timed_out``.
"""

from __future__ import annotations

import itertools
from typing import Any

from rewardkit_flowgrpo.agent import AgentSystem, Trajectory
from rewardkit_flowgrpo.planners import Planner, TRLPlanner, hf_planner_for

ROW_KEYS = ("flowgrpo_query_id", "flowgrpo_traj_id", "flowgrpo_turn", "flowgrpo_num_turns", "flowgrpo_max_turns",
            "flowgrpo_is_pad", "flowgrpo_answer", "flowgrpo_error", "flowgrpo_timed_out")


def prompt_text(prompt: Any) -> str:
    """The query text of a dataset prompt: a string, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        for m in reversed(prompt):
            if isinstance(m, dict) and m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, list):
                    return "".join(p.get("text", "") for p in c if isinstance(p, dict))
                return str(c)
    raise TypeError(f"cannot read a query out of prompt {prompt!r}")


def trajectories_to_rows(trajs: list[Trajectory], max_turns: int, pad_token_id: int) -> dict[str, list[Any]]:
    """Flatten trajectories into ``len(trajs) * max_turns`` rows (real turns, then padding rows)."""
    rows: dict[str, list[Any]] = {k: [] for k in ("prompt_ids", "completion_ids", "logprobs", "env_mask", *ROW_KEYS)}
    have_logprobs = all(t.logprobs is not None for tr in trajs for t in tr.turns)
    for tr in trajs:
        if tr.num_turns > max_turns:
            raise ValueError(f"trajectory {tr.traj_id} has {tr.num_turns} turns > max_turns={max_turns}")
        for slot in range(max_turns):
            pad = slot >= tr.num_turns
            if pad:
                rows["prompt_ids"].append([pad_token_id])
                rows["completion_ids"].append([pad_token_id])
                rows["logprobs"].append([0.0])
                rows["env_mask"].append([0])
            else:
                turn = tr.turns[slot]
                if not turn.completion_ids:
                    raise ValueError(f"trajectory {tr.traj_id} turn {slot} has an empty completion")
                rows["prompt_ids"].append(list(turn.prompt_ids))
                rows["completion_ids"].append(list(turn.completion_ids))
                rows["logprobs"].append(list(turn.logprobs) if have_logprobs else None)
                rows["env_mask"].append([1] * len(turn.completion_ids))
            rows["flowgrpo_query_id"].append(tr.query_id)
            rows["flowgrpo_traj_id"].append(tr.traj_id)
            rows["flowgrpo_turn"].append(slot)
            rows["flowgrpo_num_turns"].append(tr.num_turns)
            rows["flowgrpo_max_turns"].append(max_turns)
            rows["flowgrpo_is_pad"].append(pad)
            rows["flowgrpo_answer"].append(tr.answer)
            rows["flowgrpo_error"].append(tr.error or "")
            rows["flowgrpo_timed_out"].append(tr.timed_out)
    if not have_logprobs:
        rows["logprobs"] = None
    return rows


class FlowRollout:
    """A TRL ``rollout_func`` running the agent system: ``GRPOTrainer(..., rollout_func=FlowRollout(...))``.

    Args:
        system: the :class:`AgentSystem` (its ``max_turns`` is T_max).
        group_size: G, trajectories per query (AgentFlow: 8). TRL's ``num_generations`` must be
            ``G * T_max``.
        planner: ``"trl"`` samples through the trainer's own generation path (transformers, or vLLM
            where configured, weights kept in sync by TRL); ``"hf"`` uses :class:`HFPlanner` on the
            trainer's model (returns sampling log-probs); or any :class:`Planner` object
            (:mod:`rewardkit_flowgrpo.planners`).
    """

    def __init__(self, system: AgentSystem, group_size: int, *, planner: str | Planner = "trl") -> None:
        if group_size < 1:
            raise ValueError("group_size must be >= 1")
        self.system = system
        self.group_size = group_size
        self.planner = planner
        self.last_trajectories: list[Trajectory] = []
        self._query_counter = itertools.count()
        self.__name__ = "flowgrpo_rollout"

    @property
    def max_turns(self) -> int:
        return self.system.max_turns

    @property
    def rows_per_query(self) -> int:
        return self.group_size * self.system.max_turns

    def _planner(self, trainer: Any) -> Planner:
        if not isinstance(self.planner, str):
            return self.planner
        if self.planner == "trl":
            return TRLPlanner(trainer)
        if self.planner == "hf":
            return hf_planner_for(trainer)
        raise ValueError(f"planner must be 'trl', 'hf' or a Planner, got {self.planner!r}")

    def split_queries(self, prompts: list[Any]) -> list[Any]:
        """The unique queries of TRL's repeated prompt list (runs of ``G * T_max`` identical entries)."""
        k = self.rows_per_query
        if len(prompts) % k:
            raise ValueError(
                f"rollout_func got {len(prompts)} prompts, not a multiple of G*T_max = {self.group_size}*"
                f"{self.max_turns} = {k}; set num_generations={k} and make per_device_train_batch_size * "
                "steps_per_generation a multiple of it (grpo_kwargs does this)")
        queries = []
        for start in range(0, len(prompts), k):
            run = prompts[start:start + k]
            if any(p != run[0] for p in run[1:]):
                raise ValueError(
                    f"rollout_func expected {k} copies of each prompt in a row (TRL repeats each prompt "
                    "num_generations times); got a mixed run. Is num_generations equal to G*T_max?")
            queries.append(run[0])
        return queries

    def run(self, prompts: list[Any], planner: Planner, pad_token_id: int) -> dict[str, list[Any]]:
        queries = [prompt_text(p) for p in self.split_queries(prompts)]
        first = next(self._query_counter)
        # consume one id per query so ids stay unique within the process
        for _ in range(len(queries) - 1):
            next(self._query_counter)
        trajs = self.system.run(queries, planner, self.group_size, first_query_id=first)
        self.last_trajectories = trajs
        return trajectories_to_rows(trajs, self.max_turns, pad_token_id)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        tok = trainer.processing_class
        tok = getattr(tok, "tokenizer", tok)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        rows = self.run(prompts, self._planner(trainer), pad)
        # a padding row's single token must end the completion for TRL (EOS or pad): it is pad here
        return rows
