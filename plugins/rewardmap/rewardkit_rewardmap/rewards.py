"""The RewardMap rewards on rewardkit's :class:`~rewardkit.Reward` protocol.

``rewardmap.route``   planning answers: W · (10·acc + α·detail [+ format])
``rewardmap.plus``    ReasonMap-Plus answers (TorF1/2, Counting1/2/3): W · (10·acc [+ format])
``rewardmap.reward``  dispatches on the ``type`` column, so one reward serves the curriculum data

Columns follow the released ReasonMap / ReasonMap-Plus rows: ``type``, ``answer``, ``station_1``,
``station_2``, ``question_transfer_count``, ``difficulty_city`` and the map as ``metro`` (mapping or
JSON text) or ``json`` (path to a stations file, read once per process).

Each call shares its per-row :class:`Components` as ``reward.last_call.detail(COMPONENTS)`` (None
where a row got no value); the curriculum hook gates on them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewardkit import Batch, Reward, RewardInputError
from rewardkit_rewardmap.metro import MetroCache
from rewardkit_rewardmap.scoring import (
    DEFAULT_BETA,
    DEFAULT_GAMMA,
    PLANNING,
    PLUS_TYPES,
    Metro,
    difficulty_weight,
    extract_plus_answer,
    parse_sections,
    planning_accuracy,
    planning_detail,
    planning_format_ok,
    plus_accuracy,
    plus_format_ok,
    transfer_count,
    truth_value,
)

COMPONENTS = "components"  # the row-aligned detail every RewardMap reward shares (see Batch.share)


@dataclass
class Components:
    """What one completion's reward was made of (logged as per-call means)."""

    reward: float
    acc: float
    detail: float
    weight: float
    format: float
    planning: bool


def strip_think(text: str) -> str:
    """The text after the last ``</think>`` (the whole text when there is none)."""
    i = text.rfind("</think>")
    return text if i < 0 else text[i + len("</think>"):]


class BaseMapReward(Reward):
    """Shared parameters and the batch loop of the three RewardMap rewards.

    Args:
        alpha: weight α of the detail term (planning only).
        transfer_penalty: ``"official"`` (-5 when segment i+1 > q, the released code) or
            ``"paper"`` (-5 when i > q, the paper's Algorithm 1 read literally).
        format_reward: an explicit format term added inside the weight (the paper's R_format; the
            official code has none, so the default is 0.0).
        difficulty_weights: multiply by W (code mode "difficulty_aware"); False gives W = 1.
        gamma: map-difficulty weights {easy, middle, hard}.
        beta: (β0, β1) question weights for 0 / >= 1 transfers (planning only).
        beijing_aliases: the official 八通 -> "Line 1", 大兴 -> "Line 4" route-name hacks.
        think: strip everything up to the last ``</think>`` before parsing (not in the official code).
        stations_root: where ``json`` column paths are resolved (ReasonMap's ``stations/`` folder).
    """

    # columns holding file paths: a reward server resolves them under its --data-root, or refuses them
    path_columns = ("json",)

    def __init__(self, *, alpha: float = 0.5, transfer_penalty: str = "official", format_reward: float = 0.0,
                 difficulty_weights: bool = True, gamma: Mapping[str, float] | None = None,
                 beta: Sequence[float] | None = None, beijing_aliases: bool = True, think: bool = False,
                 stations_root: str | None = None, correct_points: float = 10.0, detail_cap: float = 10.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if transfer_penalty not in ("official", "paper"):
            raise ValueError(f"transfer_penalty must be 'official' or 'paper', got {transfer_penalty!r}")
        self.alpha = float(alpha)
        self.transfer_penalty = transfer_penalty
        self.format_reward = float(format_reward)
        self.difficulty_weights = bool(difficulty_weights)
        self.gamma = dict(DEFAULT_GAMMA if gamma is None else gamma)
        self.beta = tuple(DEFAULT_BETA if beta is None else beta)
        if len(self.beta) != 2:
            raise ValueError(f"beta is (β0, β1) for 0 / >= 1 transfers, got {self.beta!r}")
        if set(self.gamma) != {"easy", "middle", "hard"}:
            raise ValueError(f"gamma needs weights for easy, middle and hard, got {sorted(self.gamma)}")
        self.beijing_aliases = beijing_aliases
        self.think = think
        self.stations_root = stations_root
        self.correct_points = float(correct_points)
        self.detail_cap = float(detail_cap)
        self._lazy_metros: MetroCache | None = None

    # -- helpers ------------------------------------------------------------------------------
    @property
    def metros(self) -> MetroCache:
        if self._lazy_metros is None:
            self._lazy_metros = MetroCache(stations_root=self.stations_root)
        return self._lazy_metros

    def _metro(self, columns: Mapping[str, list[Any]], i: int) -> Metro:
        if "metro" in columns and columns["metro"][i] is not None:
            return self.metros.from_value(columns["metro"][i])
        if "json" in columns and columns["json"][i] is not None:
            return self.metros.from_path(columns["json"][i])
        raise RewardInputError(f"reward {self.name!r} needs the map: a 'metro' column (mapping line -> stops, "
                               "or its JSON text) or a 'json' column (path to a ReasonMap stations file)")

    def _weight(self, qtype: str, difficulty: Any, q: int | None) -> float:
        if not self.difficulty_weights:
            return 1.0
        return difficulty_weight(qtype, difficulty, q, gamma=self.gamma, beta=self.beta)

    @staticmethod
    def _need(columns: Mapping[str, list[Any]], names: Sequence[str], reward: str) -> None:
        missing = [n for n in names if n not in columns]
        if missing:
            raise RewardInputError(f"reward {reward!r} needs dataset columns {missing} (passed: "
                                   f"{sorted(columns) or 'none'}); see docs/methods/rewardmap.md")

    # -- the two kinds of answers ---------------------------------------------------------------
    def score_planning(self, text: str, columns: Mapping[str, list[Any]], i: int) -> Components:
        station1, station2 = columns["station_1"][i], columns["station_2"][i]
        if not isinstance(station1, str) or not isinstance(station2, str):
            raise RewardInputError(f"station_1/station_2 must be strings, got {station1!r}, {station2!r}")
        q = transfer_count(columns["question_transfer_count"][i])
        weight = self._weight(PLANNING, columns["difficulty_city"][i], q)
        metro = self._metro(columns, i)
        if self.think:
            text = strip_think(text)
        sections = parse_sections(text)
        acc = planning_accuracy(sections, metro, station1, station2, aliases=self.beijing_aliases)
        detail = planning_detail(sections, metro, station1, station2, q, transfer_penalty=self.transfer_penalty,
                                 aliases=self.beijing_aliases, cap=self.detail_cap)
        fmt = 1.0 if self.format_reward and planning_format_ok(sections) else 0.0
        raw = self.correct_points * acc + self.alpha * detail + self.format_reward * fmt
        return Components(raw * weight, float(acc), detail, weight, fmt, True)

    def score_plus(self, qtype: str, text: str, columns: Mapping[str, list[Any]], i: int) -> Components:
        truth = truth_value(columns["answer"][i])
        weight = self._weight(qtype, columns["difficulty_city"][i], None)
        if self.think:
            text = strip_think(text)
        answer = extract_plus_answer(text)
        acc = plus_accuracy(qtype, answer, truth)
        fmt = 1.0 if self.format_reward and plus_format_ok(qtype, text, answer) else 0.0
        raw = self.correct_points * acc + self.format_reward * fmt
        return Components(raw * weight, float(acc), 0.0, weight, fmt, False)

    def score_row(self, text: str, columns: Mapping[str, list[Any]], i: int) -> Components | None:
        raise NotImplementedError

    def check_columns(self, columns: Mapping[str, list[Any]]) -> None:
        """Raise a clear error when a column the reward needs is missing."""

    # -- protocol -------------------------------------------------------------------------------
    def score_batch(self, batch: Batch) -> list[float | None]:
        self.check_columns(batch.columns)
        comps: list[Components | None] = self.each_row(
            batch, lambda i: self.score_row(batch.texts[i], batch.columns, i))
        batch.extras[COMPONENTS] = comps
        # a non-finite value becomes an error (None) in the base class: that row has no components
        batch.share(COMPONENTS, [c if c is not None and math.isfinite(c.reward) else None for c in comps])
        return [None if c is None else c.reward for c in comps]

    def log_components(self, batch: Batch) -> None:
        comps = [c for c in batch.extras.get(COMPONENTS, []) if c is not None]
        if not comps:
            return
        log_metric = batch.log_metric
        n = len(comps)
        prefix = f"rewardmap/{self.name}"
        log_metric(f"{prefix}/acc", sum(c.acc for c in comps) / n)
        log_metric(f"{prefix}/weight", sum(c.weight for c in comps) / n)
        if self.format_reward:
            log_metric(f"{prefix}/format", sum(c.format for c in comps) / n)
        planning = [c for c in comps if c.planning]
        if planning:
            log_metric(f"{prefix}/detail", sum(c.detail for c in planning) / len(planning))
            log_metric(f"{prefix}/acc_planning", sum(c.acc for c in planning) / len(planning))
        plus = [c for c in comps if not c.planning]
        if plus:
            log_metric(f"{prefix}/acc_plus", sum(c.acc for c in plus) / len(plus))


def _row_type(columns: Mapping[str, list[Any]], i: int) -> str | None:
    col = columns.get("type")
    return None if col is None else col[i]


class RouteReward(BaseMapReward):
    """``rewardmap.route``: RewardMap's planning reward, W · (10·acc + α·detail).

    Rows whose ``type`` column names a ReasonMap-Plus type get ``None`` (the reward does not apply).
    """

    def check_columns(self, columns):
        self._need(columns, ("station_1", "station_2", "question_transfer_count", "difficulty_city"), self.name)

    def score_row(self, text, columns, i):
        qtype = _row_type(columns, i)
        if qtype is not None and qtype != PLANNING:
            if qtype in PLUS_TYPES:
                return None
            raise ValueError(f"unknown question type {qtype!r}")
        return self.score_planning(text, columns, i)


class PlusReward(BaseMapReward):
    """``rewardmap.plus``: ReasonMap-Plus exact-match reward, W_map · 10·acc. Planning rows get None."""

    def check_columns(self, columns):
        self._need(columns, ("type", "answer", "difficulty_city"), self.name)

    def score_row(self, text, columns, i):
        qtype = columns["type"][i]
        if qtype == PLANNING:
            return None
        if qtype not in PLUS_TYPES:
            raise ValueError(f"unknown ReasonMap-Plus type {qtype!r}; expected one of {PLUS_TYPES}")
        return self.score_plus(qtype, text, columns, i)


class MapReward(BaseMapReward):
    """``rewardmap.reward``: one reward for the mixed curriculum data, dispatching on ``type``."""

    def check_columns(self, columns):
        self._need(columns, ("type", "difficulty_city"), self.name)

    def score_row(self, text, columns, i):
        qtype = columns["type"][i]
        if qtype == PLANNING:
            self._need(columns, ("station_1", "station_2", "question_transfer_count"), self.name)
            return self.score_planning(text, columns, i)
        if qtype in PLUS_TYPES:
            self._need(columns, ("answer",), self.name)
            return self.score_plus(qtype, text, columns, i)
        raise ValueError(f"unknown question type {qtype!r}; expected 'planning' or one of {PLUS_TYPES}")
