"""ReasonFlux's data model: a question, a thinking trajectory (steps) and a final response.

A sample comes from a TRL reward call (prompt + completion, with ``<think>…</think>`` in the
completion) or from dataset columns (``thinking_column`` / ``response_column``, as in the s1 or
OpenThoughts trajectory–response pairs). Steps are split on blank lines (the paper splits on
``"\\n\\n"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rewardkit import Sample, Splitter, Step, completion_text, message_text, split_steps, split_thinking

NoThink = Literal["split_last", "all", "none"]
NO_THINK = ("split_last", "all", "none")


@dataclass
class ReasonSample:
    """``thinking`` spans index ``source`` (the completion text, or the thinking column's text)."""

    question: str
    thinking: list[Step]
    response: str
    response_steps: list[Step]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def thinking_texts(self) -> list[str]:
        return [s.text for s in self.thinking]

    @property
    def response_texts(self) -> list[str]:
        return [s.text for s in self.response_steps]


def question_text(prompt: Any) -> str:
    """The question of a prompt: the string itself, or the last user message of a chat prompt."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt.strip()
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        pick = users[-1] if users else (prompt[-1] if prompt else None)
        return message_text(pick.get("content")).strip() if isinstance(pick, dict) else ""
    return str(prompt).strip()


@dataclass
class SampleParser:
    """How a reward call's row becomes a :class:`ReasonSample`.

    Args:
        split: step splitter (see :func:`rewardkit.trajectory.split_steps`), default blank lines.
        thinking_column / response_column: read the trajectory and the response from dataset
            columns instead of the completion (offline data such as s1's pairs).
        question_column: read the question from a column instead of the prompt.
        no_think: what a completion without ``<think>`` is: ``"split_last"`` (its last step is the
            response, the steps before it the thinking), ``"all"`` (every step is thinking and the
            whole completion is the response) or ``"none"`` (the row does not apply: ``None``).
    """

    split: Splitter = "blank_line"
    thinking_column: str | None = None
    response_column: str | None = None
    question_column: str | None = None
    no_think: NoThink = "split_last"

    def __post_init__(self) -> None:
        if self.no_think not in NO_THINK:
            raise ValueError(f"no_think must be one of {NO_THINK}, got {self.no_think!r}")

    def parse(self, text: str, prompt: Any = None, row: dict[str, Any] | None = None) -> ReasonSample | None:
        row = row or {}
        if self.question_column is not None:
            question = question_text(_column(row, self.question_column, "question_column"))
        else:
            question = question_text(prompt)
        if self.thinking_column is not None:
            thinking_src = completion_text(_column(row, self.thinking_column, "thinking_column") or "")
            if self.response_column is not None:
                response = completion_text(_column(row, self.response_column, "response_column") or "")
            else:
                response = text
            thinking = split_steps(thinking_src, self.split)
            return ReasonSample(question, thinking, response.strip(), split_steps(response, self.split),
                                source=thinking_src)
        think_span, answer_span = split_thinking(text)
        if self.response_column is not None:
            response = completion_text(_column(row, self.response_column, "response_column") or "")
        else:
            response = text[answer_span[0]:answer_span[1]]
        if think_span is not None:
            thinking = split_steps(text, self.split, start=think_span[0], end=think_span[1])
            return ReasonSample(question, thinking, response.strip(), split_steps(response, self.split), source=text)
        if self.no_think == "none":
            return None
        steps = split_steps(text, self.split)
        if self.no_think == "all" or self.response_column is not None:
            resp = response if self.response_column is not None else text
            return ReasonSample(question, steps, resp.strip(), split_steps(resp, self.split), source=text)
        # split_last: the final step is the response, the steps before it the thinking
        if not steps:
            return ReasonSample(question, [], "", [], source=text)
        last = steps[-1]
        return ReasonSample(question, steps[:-1], last.text, [Step(last.text, 0, len(last.text))], source=text)

    def parse_sample(self, sample: Sample) -> ReasonSample | None:
        return self.parse(sample.text, sample.prompt, sample.row)


def _column(row: dict[str, Any], column: str, option: str) -> Any:
    if column not in row:
        raise KeyError(f"no column {column!r} ({option}); columns: {sorted(row)}")
    return row[column]
