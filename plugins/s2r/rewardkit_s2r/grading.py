"""Correctness of an attempt's answer against the gold answer.

Exact match of the normalised answers first (the released code's fast path), then rewardkit's
``math.accuracy`` (math-verify equivalence) on ``\\boxed{answer}``. Results are cached per
(answer, gold) pair: trajectories of one group mostly repeat the same few answers. When math-verify
gives no answer (a timeout, or a gold it cannot parse) the grade is None, never "wrong": the S²R
rewards then give the row None (skipped by TRL, counted under ``rewardkit/<name>/none``).
"""

from __future__ import annotations

from typing import Any

from rewardkit import Sample
from rewardkit_s2r.parse import last_boxed, normalize_answer


class Grader:
    def __init__(self, *, symbolic: bool = True, cache_size: int = 65536) -> None:
        self.symbolic = symbolic
        self.cache_size = cache_size
        self._cache: dict[tuple[str, str], bool] = {}
        self._lazy_accuracy: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}

    @staticmethod
    def gold_answer(gold: Any) -> str | None:
        """The gold answer: a bare answer, or the last ``\\boxed{}`` of a gold solution."""
        if gold is None:
            return None
        g = str(gold)
        boxed = last_boxed(g)
        return normalize_answer(boxed if boxed is not None else g)

    def correct(self, answer: str | None, gold: Any) -> bool | None:
        """True when ``answer`` (already normalised, or None) matches ``gold``; None when math-verify
        could not decide (not cached: a timeout may not repeat)."""
        if answer is None:
            return False
        g = self.gold_answer(gold)
        if g is None:
            raise ValueError("gold answer is missing")
        if answer == g:
            return True
        if not self.symbolic:
            return False
        key = (answer, g)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if self._lazy_accuracy is None:
            from rewardkit import get_reward

            self._lazy_accuracy = get_reward("math.accuracy", gold_column="gold")
            self._lazy_accuracy.name = "s2r.grader"
        text = f"\\boxed{{{answer}}}"
        value = self._lazy_accuracy.score(Sample(index=0, prompt="", text=text, completion=text,
                                                 completion_ids=None, row={"gold": g}))
        if value is None:
            return None
        ok = bool(value)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[key] = ok
        return ok
