"""The plugin's rewards."""

from __future__ import annotations

from typing import Any

from rewardkit import Batch, Reward


class KeywordReward(Reward):
    """Fraction of ``keywords`` that appear in the completion (case-insensitive).

    Each row's matched keywords are shared with trainer hooks (``last_call.detail("matched")``) and
    the batch's mean match count is logged as ``example/<name>/matched_mean``.
    """

    def __init__(self, *, keywords: tuple[str, ...] = ("answer",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not keywords:
            raise ValueError("keywords must not be empty")
        self.keywords = tuple(k.lower() for k in keywords)

    def score_batch(self, batch: Batch) -> list[float | None]:
        matched = self.each_row(batch, lambda i: [k for k in self.keywords if k in batch.texts[i].lower()])
        batch.share("matched", matched)
        return [None if m is None else len(m) / len(self.keywords) for m in matched]

    def log_components(self, batch: Batch) -> None:
        rows = [m for m in batch.details["matched"] if m is not None]
        batch.log_metric(f"example/{self.name}/matched_mean", sum(map(len, rows)) / max(len(rows), 1))
