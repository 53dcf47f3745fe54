"""The rollout's row layout for advantage tests: T_max slots per trajectory, real turns first, then padding."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from rewardkit_flowgrpo.advantages import AdvantageResult, flow_advantages


def turn_rows(trajectories: Iterable[tuple[Hashable, Hashable, float, int]], max_turns: int) -> dict[str, list[Any]]:
    """Columns ``reward, query, traj, pad, turns`` for ``(query, traj_id, reward, T_i)`` trajectories."""
    rows: dict[str, list[Any]] = {"reward": [], "query": [], "traj": [], "pad": [], "turns": []}
    for query, traj, reward, turns in trajectories:
        for slot in range(max_turns):
            rows["reward"].append(reward)
            rows["query"].append(query)
            rows["traj"].append(traj)
            rows["pad"].append(slot >= turns)
            rows["turns"].append(turns)
    return rows


def advantages_of(rows: dict[str, list[Any]], max_turns: int, **options: Any) -> AdvantageResult:
    """:func:`flow_advantages` on the columns of :func:`turn_rows`."""
    return flow_advantages(rows["reward"], rows["query"], rows["traj"], rows["pad"], rows["turns"], max_turns,
                           **options)
