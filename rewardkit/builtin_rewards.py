"""Built-in generic rewards, registered through the same hook as any plugin.

``math.accuracy``  math-verify equivalence of the completion's answer with a gold column.
``format.boxed``   1 when the completion has a non-empty, balanced ``\\boxed{...}``.
``format.think``   TRL's ``think_format_reward``: ``<think>...</think>`` then the answer.
``length.overlong`` TRL's soft overlong punishment on ``completion_ids`` (DAPO).
"""

from __future__ import annotations

import re
from typing import Any

from rewardkit.answer_check import TIMEOUT, CheckFailed, Job, check_jobs, last_boxed, prepare, read_gold
from rewardkit.hookspecs import hookimpl
from rewardkit.reward import Batch, Reward, RewardInputError, Sample

__all__ = ["BoxedFormat", "MathAccuracy", "OverlongPenalty", "ThinkFormat", "has_boxed_answer", "last_boxed"]


class MathAccuracy(Reward):
    """1.0 when the completion's final answer equals the gold answer under math-verify, else 0.0.

    The gold answer may be written as any common dataset writes it (bare LaTeX, a GSM8K
    ``#### 18`` solution, a solution with ``\\boxed{}``, a choice letter, ...: see
    :func:`rewardkit.answer_check.read_gold`). The prediction is read from the last
    ``answer_window`` characters after ``</think>``: its last ``\\boxed{}``, else what follows
    ``####``, else a plain-text search ("the answer is 42").

    Checks run in a shared pool of ``workers`` processes with ``timeout`` seconds per answer, so
    no answer can hang the caller on any thread. ``None`` means the row does not apply: a missing
    or unparseable gold answer (counted under ``rewardkit/<name>/none``) or a check past its
    deadline (also counted under ``rewardkit/<name>/timeouts``).
    """

    def __init__(self, *, gold_column: str = "solution", answer_window: int = 4096, think: bool = True,
                 timeout: float = 5.0, workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.gold_column = gold_column
        self.answer_window = answer_window
        self.think = think
        self.timeout = timeout
        self.workers = workers

    def _prepare_row(self, gold: Any, text: str) -> Job | float | None:
        parsed = read_gold(gold)
        if parsed is None:
            return None
        if self.think and "</think>" in text:
            text = text.rsplit("</think>", 1)[1]
        return prepare(parsed, text[-self.answer_window:])

    def _check(self, jobs: list[Job]) -> list[Any]:
        return check_jobs(jobs, timeout=self.timeout, workers=self.workers)

    def score_batch(self, batch: Batch) -> list[float | None]:
        if self.gold_column not in batch.columns:
            raise RewardInputError(
                f"reward {self.name!r} needs the gold answers in a dataset column {self.gold_column!r}; "
                f"columns passed: {sorted(batch.columns) or 'none'} (set gold_column=...)")
        golds = batch.columns[self.gold_column]
        values = self.each_row(batch, lambda i: self._prepare_row(golds[i], batch.texts[i]))
        rows = [i for i, v in enumerate(values) if isinstance(v, Job)]
        for i, outcome in zip(rows, self._check([values[i] for i in rows])):
            if outcome is TIMEOUT:
                batch.counts["timeouts"] += 1
                outcome = None
            elif isinstance(outcome, CheckFailed):
                outcome = self._swallow(outcome, 1, batch)
            values[i] = outcome
        log_extra = batch.context.log_extra
        if log_extra is not None:
            log_extra(f"{self.name}/gold", [str(g) for g in golds])
        return values

    def score(self, sample: Sample) -> float | None:
        """One sample, outside a reward call (plugins grading single answers). A check past its
        deadline returns None and counts in ``self.counters["timeouts"]``."""
        value = self._prepare_row(sample.row[self.gold_column], sample.text)
        if not isinstance(value, Job):
            return value
        (outcome,) = self._check([value])
        if outcome is TIMEOUT:
            self.counters["timeouts"] += 1
            return None
        if isinstance(outcome, CheckFailed):
            raise outcome
        return outcome


class BoxedFormat(Reward):
    """1.0 when the completion contains a non-empty, balanced ``\\boxed{...}``, else 0.0."""

    empty_value = 0.0

    def score_batch(self, batch: Batch) -> list[float | None]:
        return [has_boxed_answer(t) for t in batch.texts]


def has_boxed_answer(text: str) -> float:
    boxed = last_boxed(text)
    return 1.0 if boxed is not None and boxed.strip() else 0.0


class ThinkFormat(Reward):
    """TRL's ``think_format_reward``: 1.0 for ``<think>…</think>`` followed by the answer."""

    empty_value = 0.0

    def score_batch(self, batch: Batch) -> list[float | None]:
        # TRL's pattern and flags, copied so the core does not need TRL (test_core_without_trl checks
        # the two agree); TRL reads completion[0]["content"], which is our extracted text
        return [1.0 if _THINK_FORMAT.match(t) else 0.0 for t in batch.texts]


_THINK_FORMAT = re.compile(r"^<think>(?!.*<think>)(.*?)</think>.*$", re.DOTALL | re.MULTILINE)


class OverlongPenalty(Reward):
    """TRL's soft overlong punishment (DAPO): 0 up to ``max_completion_len - soft_punish_cache``
    tokens, then linearly down to -1 at ``max_completion_len``, -1 beyond."""

    def __init__(self, *, max_completion_len: int = 512, soft_punish_cache: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 < soft_punish_cache <= max_completion_len:
            raise ValueError("need 0 < soft_punish_cache <= max_completion_len")
        self.max_completion_len = max_completion_len
        self.soft_punish_cache = soft_punish_cache

    def score_batch(self, batch: Batch) -> list[float | None]:
        if batch.completion_ids is None:
            raise RewardInputError(f"reward {self.name!r} counts tokens and needs completion_ids "
                                   "(TRL passes them; pass them when calling it directly)")
        return [soft_overlong_punishment(len(ids), self.max_completion_len, self.soft_punish_cache)
                for ids in batch.completion_ids]


def soft_overlong_punishment(length: int, max_completion_len: int, soft_punish_cache: int) -> float:
    """TRL's ``get_soft_overlong_punishment`` for one completion (DAPO Eq. 13), same arithmetic, so the
    core does not need TRL (test_core_without_trl checks the two agree)."""
    if length <= max_completion_len - soft_punish_cache:
        return 0.0
    if length <= max_completion_len:
        return (max_completion_len - soft_punish_cache - length) / soft_punish_cache
    return -1.0


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("math.accuracy", MathAccuracy, kind="outcome",
             description="math-verify equivalence of the final answer with a gold column (default 'solution')")
    register("format.boxed", BoxedFormat, kind="outcome",
             description="1 when the completion has a non-empty \\boxed{...}")
    register("format.think", ThinkFormat, kind="outcome",
             description="TRL's think_format_reward: <think>...</think> followed by an answer")
    register("length.overlong", OverlongPenalty, kind="outcome",
             description="TRL's soft overlong punishment on completion_ids (DAPO)")
