"""Evaluate an S²R policy: greedy trajectories on held-out questions, scored with the paper's §E
behaviour metrics (:func:`rewardkit_s2r.scoring.trajectory_metrics`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardkit_s2r.grading import Grader
from rewardkit_s2r.parse import DEFAULT_MARKERS, SYSTEM_PROMPT, Markers
from rewardkit_s2r.scoring import score_trajectory, trajectory_metrics
from rewardkit_s2r.stage0 import policy_prompt


def evaluate_policy(policy: Any, rows: Sequence[dict[str, Any]], *, max_new_tokens: int = 192,
                    question_key: str = "question", gold_key: str = "solution", markers: Markers = DEFAULT_MARKERS,
                    system_prompt: str | None = SYSTEM_PROMPT,
                    grader: Grader | None = None) -> tuple[dict[str, float], list[str]]:
    """One greedy trajectory per row from ``policy`` (anything with the stage-0 ``generate(prompts, n,
    temperature=..., max_new_tokens=...)``: a local model or an OpenAI-compatible server). Returns
    the metrics (``final_accuracy``, ``verification_accuracy``, ``error_recall``, ``avg_attempts``,
    ``incorrect_to_correct``, ... plus ``any_verification``: rows that verified at least once) and
    the generated texts. A row whose grade math-verify could not decide counts as not verified and
    is left out of the metrics."""
    if not rows:
        raise ValueError("evaluate_policy needs at least one row")
    outputs = [o[0] for o in policy.generate([policy_prompt(r[question_key], system_prompt) for r in rows], 1,
                                             temperature=0.0, max_new_tokens=max_new_tokens)]
    grader = grader or Grader()
    scored = [score_trajectory(text, r[gold_key], grader, markers) for text, r in zip(outputs, rows)]
    metrics = trajectory_metrics(scored)
    metrics["any_verification"] = sum(s is not None and bool(s.trajectory.verifications) for s in scored) / len(rows)
    return metrics, outputs
