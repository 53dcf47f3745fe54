"""Step splitting for DreamPRM chains, and the ``Chain`` every PRM in this plugin scores.

DreamPRM v1 responses follow a "Step k: ... / Final answer: X" template: prefix ``i`` is the text
before the header of step ``i+1`` (for the last step, the text before "Final answer"), so the
final-answer line is never scored. Headers are matched with whole numbers, so "Step 10" never
passes for "Step 1" (the official ``str.split("Step 1")`` does). DreamPRM-1.5 splits free-form
responses heuristically (numbered lines, then blank-line blocks) and appends the final answer
as the last step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardkit.trajectory import split_steps, strip_span

Span = tuple[int, int]

# "Step 3:", "step 12 -", "**Step 2.**" anywhere a line starts; the number is matched whole
STEP_HEADER = re.compile(r"(?im)^[ \t>#*]*step[\s:]*(\d+)\b")
FINAL_ANSWER = re.compile(r"(?im)^[ \t>#*]*(final answer|answer)\s*[:：]")
NUMBERED_LINE = re.compile(r"(?m)^[ \t]*(?:\d+[.)]|[-*•])[ \t]+")


@dataclass
class Chain:
    """A question and a response split into steps; ``spans[i]`` is step i's ``(start, end)``.

    ``prefix(i)`` is the response text through step i (what the v1 PRM scores); ``steps`` are the
    step texts (what the 1.5 PRM puts in its dialogue). ``image`` is passed through untouched.
    """

    question: str
    response: str
    spans: list[Span]
    image: Any = None
    final_answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> list[str]:
        return [self.response[a:b] for a, b in self.spans]

    def prefix(self, i: int) -> str:
        return self.response[: self.spans[i][1]]

    def __len__(self) -> int:
        return len(self.spans)

    @classmethod
    def from_steps(cls, question: str, steps: Sequence[str], sep: str = "\n", **kw: Any) -> Chain:
        """A chain built from step texts joined with ``sep`` (empty steps are an error)."""
        spans, parts, pos = [], [], 0
        for k, s in enumerate(steps):
            if not isinstance(s, str) or not s.strip():
                raise ValueError(f"step {k} of the chain is empty")
            if parts:
                parts.append(sep)
                pos += len(sep)
            parts.append(s)
            spans.append((pos, pos + len(s)))
            pos += len(s)
        return cls(question=question, response="".join(parts), spans=spans, **kw)


def split_dreamprm(text: str) -> tuple[list[Span], Span | None]:
    """DreamPRM v1 template split: step spans from "Step k" headers, and the final-answer span.

    Each step runs from its header to the next header (or to "Final answer"). Text before the
    first header is not a step (it stays in every prefix). Headers must count up; a header whose
    number does not increase (a quoted "Step 1" inside step 3) is part of the current step.
    Returns ``([], None)`` when no header is present.
    """
    fa = None
    headers: list[tuple[int, int]] = []  # (start, number)
    last_k = 0
    for m in STEP_HEADER.finditer(text):
        k = int(m.group(1))
        if k > last_k:
            headers.append((m.start(), k))
            last_k = k
    fam = None
    for m in FINAL_ANSWER.finditer(text):
        if not headers or m.start() > headers[-1][0]:
            fam = m
            break
    end = fam.start() if fam else len(text)
    if fam:
        fa = strip_span(text, fam.start(), len(text))
    spans: list[Span] = []
    bounds = [h[0] for h in headers] + [end]
    for a, b in zip(bounds, bounds[1:]):
        s = strip_span(text, a, b)
        if s:
            spans.append(s)
    return spans, fa


def split_heuristic(text: str) -> tuple[list[Span], Span | None]:
    """DreamPRM-1.5's free-form split: "Step k" headers, else numbered lines, else blank-line blocks,
    else lines. A trailing "Answer:"/"Final answer:" line is returned separately."""
    spans, fa = split_dreamprm(text)
    if spans:
        return spans, fa
    fam = None
    for m in FINAL_ANSWER.finditer(text):
        fam = m
    end = fam.start() if fam else len(text)
    fa = strip_span(text, fam.start(), len(text)) if fam else None
    starts = [m.start() for m in NUMBERED_LINE.finditer(text, 0, end)]
    if len(starts) >= 2:
        bounds = [0, *starts, end] if strip_span(text, 0, starts[0]) else [*starts, end]
        spans = [s for a, b in zip(bounds, bounds[1:]) if (s := strip_span(text, a, b))]
        return spans, fa
    for how in ("blank_line", "line"):
        steps = split_steps(text, how, end=end)
        if len(steps) >= 2 or how == "line":
            return [s.span for s in steps], fa
    return [], fa  # pragma: no cover


Splitter = str | Callable[[str], Sequence[Span]]


def make_chain(question: str, response: str, split: Splitter = "dreamprm", *,
               final_answer_step: bool = False, image: Any = None, **meta: Any) -> Chain:
    """Split ``response`` into a :class:`Chain`.

    ``split``: ``"dreamprm"`` (v1 "Step k" template), ``"heuristic"`` (1.5), any core splitter
    (``"blank_line"``, ``"step_k"``, ``"line"``, ``"re:<regex>"``) or a callable returning spans.
    ``final_answer_step`` appends the final-answer line as the last step (1.5 does, v1 does not).
    A response without steps gives a chain of length 0; the caller decides what that means.
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be text, got {type(response).__name__}")
    fa: Span | None = None
    if split == "dreamprm":
        spans, fa = split_dreamprm(response)
    elif split == "heuristic":
        spans, fa = split_heuristic(response)
    else:
        spans = [s.span for s in split_steps(response, split)]
    if final_answer_step and fa is not None:
        spans = [*spans, fa]
    final = response[fa[0]:fa[1]] if fa else None
    return Chain(question=question, response=response, spans=list(spans), image=image, final_answer=final,
                 meta=dict(meta))
