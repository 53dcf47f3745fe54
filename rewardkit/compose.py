"""Composition: named, weighted rewards -> TRL ``reward_funcs`` + ``reward_weights``.

TRL does the weighting and normalisation (``reward_weights``, ``scale_rewards``,
``multi_objective_aggregation``); a :class:`RewardSet` only builds the rewards and lines the
weights up with them.

A spec is a mapping from a registered reward name to either a weight or a dict with ``weight``
and the reward's parameters::

    compose({"math.accuracy": 1.0,
             "format.boxed": {"weight": 0.1},
             "length.overlong": {"weight": 0.5, "max_completion_len": 256}})

The same reward may appear twice with different parameters under ``alias`` keys:
``{"strict": {"reward": "math.accuracy", "weight": 1.0, "answer_window": 200}}``. Each entry's
``name`` (the key) becomes the metric name TRL logs, so names never collide.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardkit.plugins import get_reward, list_rewards
from rewardkit.reward import Reward


@dataclass
class RewardSet:
    """Rewards in order, with their weights; hand ``funcs`` and ``weights`` to a TRL trainer."""

    rewards: list[Reward]
    weights: list[float]
    spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.rewards) != len(self.weights):
            raise ValueError(f"{len(self.rewards)} rewards but {len(self.weights)} weights")
        names = [r.name for r in self.rewards]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            # TRL logs one metric per name and silently merges same-named functions
            raise ValueError(f"reward names must be unique, repeated: {dupes}; give one an alias key")

    @property
    def funcs(self) -> list[Reward]:
        return list(self.rewards)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rewards]

    def __len__(self) -> int:
        return len(self.rewards)

    def __iter__(self) -> Iterator[Reward]:
        return iter(self.rewards)

    def __getitem__(self, name: str) -> Reward:
        for r in self.rewards:
            if r.name == name:
                return r
        raise KeyError(f"no reward named {name!r} in this set; names: {self.names}")

    def by_kind(self, kind: str) -> list[Reward]:
        return [r for r in self.rewards if r.kind == kind]

    def grpo_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``GRPOConfig`` / ``RLOOConfig`` (``reward_weights``)."""
        return {"reward_weights": list(self.weights)}

    def score(self, prompts: list[Any], completions: list[Any], completion_ids: list[list[int]] | None = None,
              **columns: Any) -> dict[str, list[float | None]]:
        """Every reward's values on one batch, plus their weighted sum under ``"total"`` (None where
        every reward returned None, as TRL treats such a row)."""
        out: dict[str, list[float | None]] = {}
        for reward in self.rewards:
            out[reward.name] = reward(prompts, completions, completion_ids, **columns)
        total: list[float | None] = []
        for i in range(len(completions)):
            row = [(w, out[r.name][i]) for r, w in zip(self.rewards, self.weights)]
            applicable = [(w, v) for w, v in row if v is not None]
            total.append(sum(w * v for w, v in applicable) if applicable else None)
        out["total"] = total
        return out


def _entry(key: str, value: Any) -> tuple[str, float, dict[str, Any]]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return key, float(value), {}
    if isinstance(value, Mapping):
        params = dict(value)
        weight = params.pop("weight", 1.0)
        reward_name = params.pop("reward", key)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise TypeError(f"weight of {key!r} must be a number, got {weight!r}")
        return reward_name, float(weight), params
    raise TypeError(f"spec entry {key!r} must be a weight or a mapping with 'weight' and parameters; got {value!r}")


def compose(spec: Mapping[str, Any], *, on_error: str | None = None) -> RewardSet:
    """Build a :class:`RewardSet` from ``{name: weight | {weight, reward?, **params}}``.

    ``on_error``, when given, is the default error policy of every reward that does not set its own.
    Unknown names raise ``KeyError`` listing the closest registered names.
    """
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError("a reward spec is a non-empty mapping of reward names to weights")
    rewards: list[Reward] = []
    weights: list[float] = []
    for key, value in spec.items():
        reward_name, weight, params = _entry(key, value)
        if on_error is not None:
            params.setdefault("on_error", on_error)
        reward = get_reward(reward_name, **params)
        reward.name = key
        rewards.append(reward)
        weights.append(weight)
    return RewardSet(rewards, weights, spec=copy.deepcopy(dict(spec)))


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a YAML file; the spec is its ``rewards`` mapping (or the whole file if it has none)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return dict(data.get("rewards", data))


def compose_from_yaml(path: str | Path, **kwargs: Any) -> RewardSet:
    return compose(load_spec(path), **kwargs)


def available() -> list[str]:
    return sorted(list_rewards())
