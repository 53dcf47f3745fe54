"""S²R trajectory scoring without a trainer: per-action truth, ±1 rewards, bonus weights, reward
contexts (:func:`score_trajectory`), and the paper's §E behaviour metrics over a batch
(:func:`trajectory_metrics`; code mode: :func:`code_metrics`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardkit_s2r.code import CodeRollout
from rewardkit_s2r.grading import Grader
from rewardkit_s2r.parse import Markers, S2RTrajectory, parse


@dataclass
class ScoredTrajectory:
    """A parsed trajectory with per-action truth, rewards, advantage weights and reward contexts."""

    trajectory: S2RTrajectory
    correct: list[bool]  # per action: solve -> answer correct; verify -> verdict matches truth
    rewards: list[float]
    weights: list[float]
    contexts: list[str]  # reward context of each action: rewards of the previous actions, "R-1V1..."
    truncated: bool = False
    attempt_correct: list[bool] = field(default_factory=list)
    penalised: int | None = None  # index of the action whose tokens get a flat -1 (truncated response)

    @property
    def final_correct(self) -> bool:
        return bool(self.attempt_correct) and self.attempt_correct[-1]

    @property
    def spans(self) -> list[tuple[int, int]]:
        return [a.span for a in self.trajectory.actions]


def context_token(kind: str, reward: float) -> str:
    return f"{'R' if kind == 'solve' else 'V'}{reward:g}"


def score_trajectory(text: str, gold: Any, grader: Grader, markers: Markers, *, positive: float = 1.0,
                     negative: float = -1.0, bonus: bool = False, truncated: bool = False,
                     truncated_penalty: bool = False) -> ScoredTrajectory | None:
    """Per-action truth, rewards, bonus weights and reward contexts of one trajectory; None when the
    grader could not decide an attempt (a math-verify timeout): the row is skipped, never scored −1."""
    traj = parse(text, markers)
    correct: list[bool] = []
    attempt_correct: list[bool] = []
    for a in traj.actions:
        if a.kind == "solve":
            ok = grader.correct(a.answer, gold)
            if ok is None:
                return None
            attempt_correct.append(ok)
            correct.append(ok)
        else:
            truth = attempt_correct[-1] if attempt_correct else False
            correct.append(a.verdict == truth)
    rewards = [positive if ok else negative for ok in correct]
    # like the code: the last action of a truncated response, unless the response is one attempt
    penalised = len(rewards) - 1 if truncated and truncated_penalty and len(rewards) > 1 else None
    weights = [1.0] * len(rewards)
    if bonus:
        j = -1
        for i, a in enumerate(traj.actions):
            if a.kind == "solve":
                j += 1
                if j > 0 and attempt_correct[j] != attempt_correct[j - 1]:
                    weights[i] = 2.0
            elif attempt_correct and attempt_correct[j]:
                weights[i] = 2.0
    contexts, prefix = [], ""
    for a, r in zip(traj.actions, rewards):
        contexts.append(prefix)
        prefix += context_token(a.kind, r)
    return ScoredTrajectory(traj, correct, rewards, weights, contexts, truncated, attempt_correct, penalised)


def trajectory_metrics(scored: Sequence[ScoredTrajectory | None]) -> dict[str, float]:
    """The paper's §E behaviour metrics over a batch (NaN-free: absent ratios are skipped).

    ``verification_accuracy``: verdicts that match the truth; ``error_recall``: wrong attempts
    judged incorrect; ``correct_precision``: "correct" verdicts on correct attempts;
    ``incorrect_to_correct`` / ``correct_to_incorrect``: first vs final attempt; ``final_accuracy``;
    ``avg_attempts``; ``default_verdicts``: verifications whose verdict came from the default rule.
    """
    rows = [s for s in scored if isinstance(s, ScoredTrajectory)]
    out: dict[str, float] = {}
    if not rows:
        return out
    n_ver = n_ver_ok = n_wrong = n_wrong_caught = n_said_ok = n_said_ok_true = n_default = 0
    i2c = c2i = 0
    for s in rows:
        j = -1
        for a, ok in zip(s.trajectory.actions, s.correct):
            if a.kind == "solve":
                j += 1
                continue
            truth = s.attempt_correct[j] if j >= 0 else False
            n_ver += 1
            n_ver_ok += ok
            n_default += a.verdict_source == "default"
            if not truth:
                n_wrong += 1
                n_wrong_caught += a.verdict is False
            if a.verdict:
                n_said_ok += 1
                n_said_ok_true += truth
        if s.attempt_correct:
            i2c += (not s.attempt_correct[0]) and s.attempt_correct[-1]
            c2i += s.attempt_correct[0] and not s.attempt_correct[-1]
    out["final_accuracy"] = sum(s.final_correct for s in rows) / len(rows)
    out["avg_attempts"] = sum(s.trajectory.num_rounds for s in rows) / len(rows)
    out["incorrect_to_correct"] = i2c / len(rows)
    out["correct_to_incorrect"] = c2i / len(rows)
    if n_ver:
        out["verification_accuracy"] = n_ver_ok / n_ver
        out["default_verdicts"] = n_default / n_ver
    if n_wrong:
        out["error_recall"] = n_wrong_caught / n_wrong
    if n_said_ok:
        out["correct_precision"] = n_said_ok_true / n_said_ok
    return out


def code_metrics(rows: Sequence[CodeRollout | None]) -> dict[str, float]:
    """Behaviour metrics of code-mode rows: final accuracy, attempts, verification accuracy and the
    share of rows whose token split failed the code's reconstruction check."""
    rows = [r for r in rows if isinstance(r, CodeRollout)]
    if not rows:
        return {}
    verifications = [s.reward for r in rows for s in r.actions if s.kind == "verify"]
    out = {"final_accuracy": sum(r.last_reward > 0 for r in rows) / len(rows),
           "avg_attempts": sum(len(r.attempt_rewards) for r in rows) / len(rows),
           "invalid_splits": sum(not r.valid for r in rows) / len(rows)}
    if verifications:
        out["verification_accuracy"] = sum(v > 0 for v in verifications) / len(verifications)
    return out
