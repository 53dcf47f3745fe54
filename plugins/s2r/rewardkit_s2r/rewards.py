"""S²R rewards: ``s2r.outcome`` (±1 on the last attempt) and ``s2r.process`` (±1 per action).

Process rewards (paper §2.3.2): every attempt s_j gets +1 when its boxed answer is correct, else
−1; every verification v_j gets +1 when its parsed verdict equals the true correctness of s_j,
else −1. Each call shares its rows' :class:`ScoredTrajectory` (code mode: ``CodeRollout``) as
``reward.last_call.detail(SCORED)`` and the per-action rewards with their character spans as
``last_step_scores``; the ``s2r.process_advantage`` trainer hook turns them into token-level
advantages with the reward context baselines. Flags reproduce the released code's variants:

* ``bonus=True``: the advantage (R − b) of a retry whose correctness differs from the previous
  attempt, and of a verification of a correct attempt, is doubled (stored as action weights);
* ``truncated_penalty=True``: the tokens of the last action of a response without EOS get a flat
  −1 advantage (the action's reward, its reward context and the baseline table keep the real ±1);
  a response that is a single attempt (no marker) is not penalised.

``mode="code"`` scores the way the released trainer does (:mod:`rewardkit_s2r.code`): the completion
ids are split on the marker ids, each piece is decoded and scored with the code's string
normalisation and comparison, exact verdict words, the code's bonus and truncation rule. It needs
completion ids and a tokenizer (the ``s2r.process_advantage`` hook passes the trainer's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rewardkit import Batch, ProcessReward, Reward, RewardInputError, Sample, StepScores
from rewardkit_s2r.code import CodeRollout, code_rollout
from rewardkit_s2r.grading import Grader
from rewardkit_s2r.parse import Markers, get_markers
from rewardkit_s2r.scoring import ScoredTrajectory, code_metrics, score_trajectory, trajectory_metrics

__all__ = ["MODES", "SCORED", "S2ROutcomeReward", "S2RProcessReward", "ScoredTrajectory", "score_trajectory",
           "trajectory_metrics"]  # the scoring names stay importable from here

MODES = ("default", "code")
# the detail each S²R reward shares per row: its ScoredTrajectory (code mode: CodeRollout), or None
SCORED = "s2r.scored"


class _S2RBase:
    """Shared options of the S²R rewards (both modes)."""

    def _init_s2r(self, gold_column: str, markers: Markers | dict[str, Any] | None, positive: float,
                  negative: float, symbolic: bool, log_behaviour: bool, mode: str, answer_column: str | None,
                  tokenizer: Any, eos_token_ids: Sequence[int] | int | None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} ('code' = the released code's scoring), got {mode!r}")
        self.gold_column = gold_column
        self.answer_column = answer_column
        self.markers = get_markers(markers)
        self.positive = float(positive)
        self.negative = float(negative)
        self.grader = Grader(symbolic=symbolic)
        self.log_behaviour = log_behaviour
        self.mode = mode
        self.tokenizer = tokenizer
        if isinstance(eos_token_ids, int):
            eos_token_ids = [eos_token_ids]
        self.eos_token_ids = None if eos_token_ids is None else [int(t) for t in eos_token_ids]
        self._marker_ids: tuple[list[int], list[int]] | None = None

    @property
    def last_details(self) -> list[Any]:
        """Each row's scored trajectory in the last call: ``last_call.detail(SCORED)`` (read-only)."""
        return self.last_call.detail(SCORED)

    def _gold(self, batch: Batch) -> list[Any]:
        if self.gold_column not in batch.columns:
            raise RewardInputError(
                f"reward {self.name!r} needs the gold answers in a dataset column {self.gold_column!r}; "
                f"columns passed: {sorted(batch.columns) or 'none'} (set gold_column=...)")
        return batch.columns[self.gold_column]

    def _score_rows(self, batch: Batch, score_one: Callable[[int, Any], Any],
                    value_of: Callable[[Any], Any]) -> list[Any]:
        """Score every row that has a gold answer and share the scored rows as ``SCORED`` (None for a
        row without gold, with an undecided grade, or that the code cannot split)."""
        golds = self._gold(batch)
        details = self.each_row(
            batch, lambda i: None if golds[i] is None or not str(golds[i]).strip() else score_one(i, golds[i]))
        batch.share(SCORED, details)
        return [None if s is None else value_of(s) for s in details]

    def log_components(self, batch: Batch) -> None:
        if not self.log_behaviour:
            return
        details = batch.details.get(SCORED, [])
        metrics = code_metrics(details) if self.mode == "code" else trajectory_metrics(details)
        for key, value in metrics.items():
            batch.log_metric(f"s2r/{key}", float(value))

    # -- truncation ------------------------------------------------------------------------------
    def _truncated(self, batch: Batch, i: int, needed: bool) -> bool:
        if "truncated" in batch.columns:
            return bool(batch.columns["truncated"][i])
        if not needed:
            return False
        if batch.completion_ids is None or self.eos_token_ids is None:
            raise RewardInputError(
                f"reward {self.name!r} needs completion_ids plus eos_token_ids to tell truncated responses "
                "(attach the s2r.process_advantage hook, pass eos_token_ids=..., or give a 'truncated' column)")
        ids = batch.completion_ids[i]
        return not ids or ids[-1] not in self.eos_token_ids

    # -- code mode -------------------------------------------------------------------------------
    def _code_tokenizer(self) -> Any:
        tok = self.tokenizer
        if isinstance(tok, str):
            from transformers import AutoTokenizer

            tok = self.tokenizer = AutoTokenizer.from_pretrained(tok)
        if tok is None:
            raise RewardInputError(f"reward {self.name!r} has mode='code', which splits the completion ids like the "
                                   "released code: pass tokenizer=... (or attach the s2r.process_advantage hook)")
        return getattr(tok, "tokenizer", tok)

    def _code_eos(self, tok: Any) -> int:
        eos = getattr(tok, "eos_token_id", None)
        if eos is None and self.eos_token_ids:
            eos = self.eos_token_ids[0]
        if eos is None:
            raise RewardInputError(f"reward {self.name!r}: the tokenizer has no eos_token_id; pass eos_token_ids=...")
        if self.eos_token_ids is None:
            self.eos_token_ids = [int(eos)]
        return int(eos)

    def _code_score(self, batch: Batch, i: int, gold: Any, *, merge: bool) -> CodeRollout | None:
        if batch.completion_ids is None:
            raise RewardInputError(f"reward {self.name!r} has mode='code' and needs completion_ids")
        tok = self._code_tokenizer()
        eos = self._code_eos(tok)
        if self._marker_ids is None:
            self._marker_ids = (tok.encode(self.markers.split_verify, add_special_tokens=False),
                                tok.encode(self.markers.split_retry, add_special_tokens=False))
        answer = gold if self.answer_column is None else batch.columns[self.answer_column][i]
        return code_rollout(batch.completion_ids[i], truncated=self._truncated(batch, i, True), solution=gold,
                            answer="" if answer is None else answer, decode=tok.decode, eos_id=eos,
                            verify_ids=self._marker_ids[0], retry_ids=self._marker_ids[1], merge=merge)

    def _check_answer_column(self, batch: Batch) -> None:
        if self.answer_column is not None and self.answer_column not in batch.columns:
            raise RewardInputError(f"reward {self.name!r}: answer_column {self.answer_column!r} is not among the "
                                   f"columns {sorted(batch.columns)}")

class S2ROutcomeReward(_S2RBase, Reward):
    """``+1`` when the trajectory's last attempt is correct, else ``−1`` (paper §2.3.1).

    Use it with TRL's RLOOTrainer (leave-one-out baseline, KL in the reward), or GRPOTrainer with
    ``scale_rewards="none"`` plus the ``s2r.outcome_rloo`` hook. A missing gold answer, or a grade
    math-verify could not decide in time, gives None (the row is skipped and counted).

    Args:
        mode: ``"default"`` (text parse, math-verify grading) or ``"code"`` (the released code's
            token-id split, string grading and verdict words; needs ``completion_ids`` and a tokenizer).
        answer_column: code mode: the dataset's answer column the code also compares with (the
            released rows carry ``solution`` and ``answer``); None uses the gold column's value.
        tokenizer: code mode: a tokenizer or its name (the hook passes the trainer's).
    """

    def __init__(self, *, gold_column: str = "solution", markers: Markers | dict[str, Any] | None = None,
                 positive: float = 1.0, negative: float = -1.0, symbolic: bool = True,
                 log_behaviour: bool = True, mode: str = "default", answer_column: str | None = None,
                 tokenizer: Any = None, eos_token_ids: Sequence[int] | int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_s2r(gold_column, markers, positive, negative, symbolic, log_behaviour, mode, answer_column,
                       tokenizer, eos_token_ids)

    def score_batch(self, batch: Batch) -> list[float | None]:
        if self.mode == "code":
            self._check_answer_column(batch)
            return self._score_rows(batch, lambda i, gold: self._code_score(batch, i, gold, merge=False),
                                    lambda r: self.positive if r.last_reward > 0 else self.negative)
        return self._score_rows(
            batch,
            lambda i, gold: score_trajectory(batch.texts[i], gold, self.grader, self.markers,
                                             positive=self.positive, negative=self.negative),
            lambda s: self.positive if s.final_correct else self.negative)

    def score(self, sample: Sample) -> float | None:  # single-sample use outside TRL
        if self.mode == "code":
            raise RewardInputError(f"reward {self.name!r} in code mode scores batches with completion_ids; "
                                   "call it like TRL does")
        gold = sample.row.get(self.gold_column)
        if gold is None:
            return None
        s = score_trajectory(sample.text, gold, self.grader, self.markers)
        if s is None:
            return None
        return self.positive if s.final_correct else self.negative


class S2RProcessReward(_S2RBase, ProcessReward):
    """Per-action rewards of S²R's process-level RL (``kind="process"``).

    ``last_step_scores[i]`` holds the action rewards and spans of row ``i``;
    ``last_call.detail(SCORED)[i]`` the full :class:`ScoredTrajectory` (code mode:
    :class:`~rewardkit_s2r.code.CodeRollout`) for the advantage hook.

    Args:
        reducer: the scalar TRL sees when no advantage hook is attached (default ``mean``).
        bonus: the released code's doubled (R − b) for a changed retry / a verification of a
            correct attempt (off by default: the paper has no bonus; always on in code mode).
        truncated_penalty: a flat −1 advantage on the last action of a response that did not end
            with EOS (released code; off by default, always on in code mode). Needs ``eos_token_ids``
            (the ``s2r.process_advantage`` hook sets them from the trainer) and ``completion_ids``,
            or a boolean ``truncated`` column.
        mode: ``"default"`` (text parse, math-verify grading) or ``"code"`` (the released code's
            token-id split, string grading and verdict words; needs ``completion_ids`` and a tokenizer).
        answer_column: code mode: the dataset's answer column the code also compares with (the
            released rows carry ``solution`` and ``answer``); None uses the gold column's value.
        tokenizer: code mode: a tokenizer or its name (the hook passes the trainer's).
    """

    def __init__(self, *, gold_column: str = "solution", markers: Markers | dict[str, Any] | None = None,
                 positive: float = 1.0, negative: float = -1.0, bonus: bool = False,
                 truncated_penalty: bool = False, eos_token_ids: Sequence[int] | int | None = None,
                 symbolic: bool = True, log_behaviour: bool = True, reducer: str = "mean", mode: str = "default",
                 answer_column: str | None = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(reducer=reducer, **kwargs)
        self._init_s2r(gold_column, markers, positive, negative, symbolic, log_behaviour, mode, answer_column,
                       tokenizer, eos_token_ids)
        self.bonus = bool(bonus)
        self.truncated_penalty = bool(truncated_penalty)

    def _code_steps(self, batch: Batch, i: int, r: CodeRollout) -> StepScores:
        """Raw action rewards (−1 for a penalised last piece) with their character spans in the text."""
        tok = self._code_tokenizer()
        text = batch.texts[i]
        scores, spans, pos = [], [], 0
        for seg in r.segments:
            end = pos + len(seg.tokens)
            if seg.kind != "marker":
                ids = batch.completion_ids[i]
                lo = min(len(tok.decode(ids[:pos], skip_special_tokens=True)), len(text))
                hi = min(len(tok.decode(ids[:end], skip_special_tokens=True)), len(text))
                scores.append(-1.0 if seg.penalised else float(seg.reward))
                spans.append((lo, max(lo, hi)))
            pos = end
        return StepScores(scores, spans)

    def step_scores_batch(self, batch: Batch) -> list[StepScores | None]:
        if self.mode == "code":
            self._check_answer_column(batch)
            rows = self._score_rows(batch, lambda i, gold: self._code_score(batch, i, gold, merge=True), lambda r: r)
            return [None if r is None else self._code_steps(batch, i, r) for i, r in enumerate(rows)]
        return self._score_rows(
            batch,
            lambda i, gold: score_trajectory(batch.texts[i], gold, self.grader, self.markers, positive=self.positive,
                                             negative=self.negative, bonus=self.bonus,
                                             truncated=self._truncated(batch, i, self.truncated_penalty),
                                             truncated_penalty=self.truncated_penalty),
            lambda s: StepScores([self.negative if k == s.penalised else r for k, r in enumerate(s.rewards)],
                                 s.spans))
