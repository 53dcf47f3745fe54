"""rewardkit rewards as verl's custom reward function (no verl import here).

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` once per response
(``reward.custom_reward_function.path/name``, or the top-level ``custom_reward_function`` of older
configs) and merges ``reward.custom_reward_function.reward_kwargs`` into every call. Those kwargs
carry the rewardkit spec::

    reward.custom_reward_function.path=pkg://rewardkit.integrations.verl
    reward.custom_reward_function.name=compute_score          # or compute_score_async
    +reward.custom_reward_function.reward_kwargs.spec=/abs/path/rewards.yaml

``spec`` is a rewards YAML (as for :func:`rewardkit.compose_from_yaml`) or an inline mapping; it is
composed once per process and cached. Other kwargs: ``gold_column`` (the column ``ground_truth`` is
passed as, default ``"solution"``, the column ``math.accuracy`` reads), ``prompt_column`` (the
``extra_info`` key holding the question, default ``"question"``), ``none_score`` (the score of a
response no reward applies to, default 0.0, counted under ``rewardkit/none``) and ``on_error``.

The result is a dict: ``"score"`` is the weighted total (:meth:`rewardkit.RewardSet.score`) and
every component is there under its spec name (NaN where that reward returned None), so verl
logs them through ``reward_extra_info``. A ``ground_truth`` that is a mapping is spread into
columns; every ``extra_info`` key is a column too.

Three entry points, one scorer: :func:`compute_score` (one response, for verl's ``naive`` reward
manager), :func:`compute_score_batch` (verl's ``batch`` reward manager:
``compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=, **reward_kwargs)``)
and :func:`compute_score_async` (verl's reward loop awaits coroutine functions; concurrent calls
from one event loop are merged into one batch, so a PRM or math-verify's worker pool sees a batch
instead of single rows).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from rewardkit.compose import RewardSet, compose, load_spec
from rewardkit.reward import TRL_CONTEXT_KWARGS, ProcessReward, StepScores

__all__ = ["VerlScorer", "compute_score", "compute_score_async", "compute_score_batch", "get_scorer"]

# kwargs verl's reward loop adds when a reward-model router runs; rewardkit rewards do not use them
_VERL_ROUTER_KWARGS = ("reward_router_address", "reward_model_tokenizer")
NONE_KEY = "rewardkit/none"
# a reward call's own arguments: an extra_info key of that name cannot be a column
RESERVED = frozenset({"prompts", "completions", "completion_ids", *TRL_CONTEXT_KWARGS})


def plain(value: Any) -> Any:
    """Hydra/OmegaConf containers (DictConfig, ListConfig) and tuples as plain dicts and lists."""
    if isinstance(value, Mapping) or (hasattr(value, "items") and hasattr(value, "keys")):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [plain(v) for v in value]
    return value


class RowSteps:
    """The process rewards' step scores of one response: ``(name, weight, StepScores | None)`` per
    reward, and ``outcome``, the weighted sum of the non-process rewards that applied (0.0 if none).

    A plain class, not a dataclass: older verl loads this module from its file path, outside
    ``sys.modules``, where dataclasses cannot resolve string annotations.
    """

    def __init__(self, steps: list[tuple[str, float, StepScores | None]], outcome: float) -> None:
        self.steps = steps
        self.outcome = outcome


class VerlScorer:
    """A composed :class:`~rewardkit.RewardSet` fed from verl's per-response fields.

    Scoring calls are serialised by a lock: a process reward keeps its last step scores on the
    instance, and verl's reward loop scores from several threads.
    """

    def __init__(self, spec: Mapping[str, Any] | str | os.PathLike[str], *, gold_column: str = "solution",
                 prompt_column: str = "question", none_score: float = 0.0, on_error: str | None = None) -> None:
        mapping = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else plain(spec)
        if not isinstance(mapping, Mapping):
            raise TypeError(f"spec must be a rewards YAML path or a mapping, got {type(spec).__name__}")
        none = float(none_score)
        if not math.isfinite(none):
            raise ValueError(f"none_score must be finite, got {none_score!r}")
        self.rewards: RewardSet = compose(mapping, on_error=on_error)
        self.gold_column = gold_column
        self.prompt_column = prompt_column
        self.none_score = none
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return self.rewards.names

    def columns(self, ground_truths: Sequence[Any], extra_infos: Sequence[Mapping[str, Any] | None],
                data_sources: Sequence[Any]) -> tuple[list[str], dict[str, list[Any]]]:
        """Prompts and reward columns for a batch: gold from ``ground_truth``, the rest from ``extra_info``."""
        n = len(ground_truths)
        if len(extra_infos) != n or len(data_sources) != n:
            raise ValueError(f"{n} ground truths, {len(extra_infos)} extra_infos and {len(data_sources)} "
                             "data sources: one of each per response")
        infos = [dict(e) if e is not None else {} for e in extra_infos]
        golds = [dict(g) if isinstance(g, Mapping) else {self.gold_column: g} for g in ground_truths]
        keys: dict[str, None] = {"data_source": None}
        for row in (*infos, *golds):
            keys.update(dict.fromkeys(row))
        clash = sorted(RESERVED.intersection(keys))
        if clash:
            raise ValueError(f"extra_info/ground_truth keys {clash} are the reward call's own arguments; rename them")
        columns = {k: [None] * n for k in keys}
        for i in range(n):
            columns["data_source"][i] = data_sources[i]
            for row in (infos[i], golds[i]):  # the gold wins over an extra_info key of the same name
                for k, v in row.items():
                    columns[k][i] = v
        prompts = [str(p) if p is not None else "" for p in columns.get(self.prompt_column, [None] * n)]
        return prompts, columns

    def score(self, solutions: Sequence[str], ground_truths: Sequence[Any],
              extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
              data_sources: Sequence[Any] | None = None, *, prompts: Sequence[str] | None = None,
              completion_ids: Sequence[Sequence[int]] | None = None,
              with_steps: bool = False) -> tuple[list[dict[str, float]], list[RowSteps] | None]:
        """One dict per response (``score``, every component, ``rewardkit/none``); with ``with_steps``
        also each response's process-reward steps and weighted outcome part (for dense rewards)."""
        n = len(solutions)
        extra_infos = list(extra_infos) if extra_infos is not None else [None] * n
        data_sources = list(data_sources) if data_sources is not None else [None] * n
        col_prompts, columns = self.columns(list(ground_truths), extra_infos, data_sources)
        prompts = list(prompts) if prompts is not None else col_prompts
        texts = ["" if s is None else str(s) for s in solutions]
        values: dict[str, list[float | None]] = {}
        steps: dict[str, list[StepScores | None]] = {}
        with self._lock:
            for reward in self.rewards:
                out = reward(prompts, texts, completion_ids, **columns)
                if inspect.isawaitable(out):  # an AsyncReward: we are in a worker thread, not on a loop
                    out = asyncio.run(_awaited(out))
                values[reward.name] = list(out)
                if isinstance(reward, ProcessReward):
                    steps[reward.name] = list(reward.last_step_scores)
        rows: list[dict[str, float]] = []
        row_steps: list[RowSteps] = []
        weights = dict(zip(self.rewards.names, self.rewards.weights))
        for i in range(n):
            applicable = [(weights[k], v[i]) for k, v in values.items() if v[i] is not None]
            total = sum(w * float(v) for w, v in applicable) if applicable else None
            row = {"score": self.none_score if total is None else float(total)}
            for k, v in values.items():
                row[k] = math.nan if v[i] is None else float(v[i])
            row[NONE_KEY] = 1.0 if total is None else 0.0
            rows.append(row)
            if with_steps:
                outcome = sum(weights[k] * float(v[i]) for k, v in values.items()
                              if k not in steps and v[i] is not None)
                row_steps.append(RowSteps([(k, weights[k], steps[k][i]) for k in steps], float(outcome)))
        return rows, (row_steps if with_steps else None)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


_SCORERS: dict[str, VerlScorer] = {}
_SCORERS_LOCK = threading.Lock()


def get_scorer(**reward_kwargs: Any) -> VerlScorer:
    """The process's scorer for these reward kwargs (built on first use, then cached)."""
    kwargs = {k: plain(v) for k, v in reward_kwargs.items() if k not in _VERL_ROUTER_KWARGS}
    spec = kwargs.pop("spec", None)
    if spec is None:
        raise ValueError("rewardkit's verl reward needs reward_kwargs.spec: a rewards YAML path or a mapping "
                         "(+reward.custom_reward_function.reward_kwargs.spec=/path/rewards.yaml)")
    allowed = {"gold_column", "prompt_column", "none_score", "on_error", "dense_mode", "dense_eps",
               "async_max_batch", "async_wait_ms"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"unknown rewardkit reward_kwargs {unknown}; known: spec, {sorted(allowed)}")
    if isinstance(spec, (str, os.PathLike)):
        spec = os.path.abspath(os.fspath(spec))
    build = {k: kwargs[k] for k in ("gold_column", "prompt_column", "none_score", "on_error") if k in kwargs}
    key = json.dumps([spec, build], sort_keys=True, default=repr)
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            scorer = _SCORERS[key] = VerlScorer(spec, **build)
    return scorer


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None,
                  **reward_kwargs: Any) -> dict[str, float]:
    """verl's custom reward function for one response (see the module docstring)."""
    rows, _ = get_scorer(**reward_kwargs).score([solution_str], [ground_truth], [extra_info], [data_source])
    return rows[0]


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
                        **reward_kwargs: Any) -> list[dict[str, float]]:
    """verl's batch reward function (``reward_manager=batch``): one dict per response."""
    rows, _ = get_scorer(**reward_kwargs).score(list(solution_strs), list(ground_truths), extra_infos,
                                                list(data_sources))
    return rows


class _Batcher:
    """Merges concurrent :func:`compute_score_async` calls on one event loop into one scoring call."""

    def __init__(self, scorer: VerlScorer, max_batch: int, wait_s: float) -> None:
        self.scorer = scorer
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[dict[str, float]]]] = []
        self.timer: asyncio.TimerHandle | None = None

    def submit(self, row: tuple[Any, ...]) -> asyncio.Future[dict[str, float]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, float]] = loop.create_future()
        self.pending.append((row, fut))
        if len(self.pending) >= self.max_batch:
            self._flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.wait_s, self._flush)
        return fut

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending, []
        if batch:
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[dict[str, float]]]]) -> None:
        sources, solutions, golds, infos = (list(col) for col in zip(*(row for row, _ in batch)))
        loop = asyncio.get_running_loop()
        try:
            rows, _ = await loop.run_in_executor(None, lambda: self.scorer.score(solutions, golds, infos, sources))
        except Exception as exc:  # every waiting call gets the error, none hangs
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), row in zip(batch, rows):
            if not fut.done():
                fut.set_result(row)


_BATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, int, float], _Batcher]] = (
    weakref.WeakKeyDictionary())


async def compute_score_async(data_source: Any, solution_str: str, ground_truth: Any,
                              extra_info: Mapping[str, Any] | None = None, **reward_kwargs: Any) -> dict[str, float]:
    """:func:`compute_score` as a coroutine for verl's reward loop; concurrent calls are scored as one
    batch (at most ``async_max_batch`` rows, default 256, gathered for ``async_wait_ms``, default 5)."""
    max_batch = int(reward_kwargs.get("async_max_batch", 256))
    wait_s = float(reward_kwargs.get("async_wait_ms", 5.0)) / 1000.0
    if max_batch < 1 or not wait_s >= 0:
        raise ValueError(f"async_max_batch must be >= 1 and async_wait_ms >= 0, got {max_batch}, {wait_s * 1000}")
    scorer = get_scorer(**reward_kwargs)
    loop = asyncio.get_running_loop()
    per_loop = _BATCHERS.setdefault(loop, {})
    key = (id(scorer), max_batch, wait_s)
    batcher = per_loop.get(key)
    if batcher is None:
        batcher = per_loop[key] = _Batcher(scorer, max_batch, wait_s)
    return await batcher.submit((data_source, solution_str, ground_truth, extra_info))
