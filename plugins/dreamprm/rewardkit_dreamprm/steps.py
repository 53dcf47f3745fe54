"""Step splitting for DreamPRM chains, and the ``Chain`` every PRM in this plugin scores.

DreamPRM v1 responses follow a "Step k: ... / Final answer: X" template. Prefix ``i`` is the text
before the header of step ``i+1`` (for the last step, the text before "Final answer"), whitespace
and any text before "Step 1" included, so the final-answer line is never scored. Two splitters:

* ``"official"`` (:func:`released_prefix_ends`): the released Best-of-N loop, quirks included:
  substring search for "Step {i+1}" (case-sensitive, first occurrence, so a "Step 2" quoted inside
  step 1 cuts it short and prefixes can shrink), "Final answer" ends the last step only when present
  (without it the last step is never scored), the loop stops at the first empty prefix.
* ``"dreamprm"`` (default, :func:`split_dreamprm`): headers at a line start, or "Step k:" inside a
  line (one-line chains), numbers matched whole ("Step 10" is never "Step 1") and counting up; the
  final answer ("Final answer:" anywhere, "Answer:" at a line start) is cut off wherever it is, and
  without one the last step runs to the end of the text and is scored.

DreamPRM-1.5 splits free-form responses heuristically (numbered lines, then blank-line blocks) and
appends the final answer as the last step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardkit import split_steps, strip_span

Span = tuple[int, int]

# "Step 3:", "step 12 -", "**Step 2.**" anywhere a line starts; the number is matched whole
STEP_HEADER = re.compile(r"(?im)^[ \t>#*]*step[\s:]*(\d+)\b")
# inside a line only with a colon ("... 5. Step 2: ..."), so "as in step 2 we" is not a header
STEP_HEADER_INLINE = re.compile(r"(?i)(?<![\w*])(?:\*\*)?step[ \t]*(\d+)[ \t]*(?:\*\*)?[ \t]*[:：]")
FINAL_ANSWER = re.compile(r"(?im)^[ \t>#*]*(final answer|answer)\s*[:：]")
FINAL_ANSWER_INLINE = re.compile(r"(?i)(?<![\w*])(?:\*\*)?final answer(?:\*\*)?[ \t]*(?:is[ \t]*)?[:：]")
NUMBERED_LINE = re.compile(r"(?m)^[ \t]*(?:\d+[.)]|[-*•])[ \t]+")


@dataclass
class Chain:
    """A question and a response split into steps; ``spans[i]`` is step i's ``(start, end)``.

    ``prefix(i)`` is the response text through step i (what the v1 PRM scores): up to
    ``prefix_ends[i]`` when the splitter set it (the text before the next header, whitespace kept),
    else to the end of step i. ``steps`` are the step texts (what the 1.5 PRM puts in its dialogue).
    ``image`` is passed through untouched.
    """

    question: str
    response: str
    spans: list[Span]
    image: Any = None
    final_answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    prefix_ends: list[int] | None = None

    def __post_init__(self) -> None:
        if self.prefix_ends is not None and len(self.prefix_ends) != len(self.spans):
            raise ValueError(f"{len(self.prefix_ends)} prefix ends for {len(self.spans)} steps")

    @property
    def steps(self) -> list[str]:
        return [self.response[a:b] for a, b in self.spans]

    def prefix(self, i: int) -> str:
        end = self.spans[i][1] if self.prefix_ends is None else self.prefix_ends[i]
        return self.response[:end]

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


def _headers(text: str) -> list[tuple[int, int]]:
    """(start, number) of every step header, line-start or inline, in text order."""
    found: dict[int, tuple[int, int]] = {}  # keyed by the position of the number: one header per number
    for pat in (STEP_HEADER, STEP_HEADER_INLINE):
        for m in pat.finditer(text):
            prev = found.get(m.start(1))
            if prev is None or m.start() < prev[0]:
                found[m.start(1)] = (m.start(), int(m.group(1)))
    return [found[k] for k in sorted(found)]


def _final_answer(text: str, after: int) -> re.Match[str] | None:
    """The first final-answer marker starting at or after ``after``."""
    best = None
    for pat in (FINAL_ANSWER, FINAL_ANSWER_INLINE):
        m = pat.search(text, after)
        if m and (best is None or m.start() < best.start()):
            best = m
    return best


def split_dreamprm_ends(text: str) -> tuple[list[Span], list[int], Span | None]:
    """Default v1 split: (step spans, prefix end of each step, final-answer span or None).

    Each step runs from its header to the next header (or to the final answer). Text before the
    first header is not a step (it stays in every prefix). Headers must count up; a header whose
    number does not increase (a quoted "Step 1" inside step 3) is part of the current step. The
    final answer is the first marker after the first header, wherever it is on its line; headers
    after it are not steps. Prefix ``i`` ends where step ``i+1`` (or the final answer) starts; the
    last step without a final answer ends at its last non-space character.
    """
    headers: list[tuple[int, int]] = []  # (start, number)
    last_k = 0
    for start, k in _headers(text):
        if k > last_k:
            headers.append((start, k))
            last_k = k
    fam = _final_answer(text, headers[0][0] if headers else 0)
    if fam is not None:
        headers = [h for h in headers if h[0] < fam.start()]
    end = fam.start() if fam else len(text)
    fa = strip_span(text, fam.start(), len(text)) if fam else None
    spans: list[Span] = []
    ends: list[int] = []
    bounds = [h[0] for h in headers] + [end]
    for a, b in zip(bounds, bounds[1:]):
        s = strip_span(text, a, b)
        if s:
            spans.append(s)
            ends.append(b if fam is not None or b < end else s[1])
    return spans, ends, fa


def split_dreamprm(text: str) -> tuple[list[Span], Span | None]:
    """Default v1 split: step spans and the final-answer span (see :func:`split_dreamprm_ends`).
    Returns ``([], fa)`` when no header is present."""
    spans, _, fa = split_dreamprm_ends(text)
    return spans, fa


def released_prefix_ends(text: str) -> list[int]:
    """Where each scored prefix ends under the released v1 Best-of-N loop (``text[:end]``).

    Prefix k is the text before the first "Step {k+1}"; when there is none, the text before the
    first "Final answer" if "Final answer" and "Step {k}" both occur; the loop stops at the first
    missing or empty prefix. Plain, case-sensitive substring search, as released.
    """
    ends: list[int] = []
    k = 1
    while k <= len(text):
        nxt = text.find(f"Step {k + 1}")
        if nxt < 0:
            fa = text.find("Final answer")
            nxt = fa if fa >= 0 and f"Step {k}" in text else -1
        if nxt <= 0:
            break
        ends.append(nxt)
        k += 1
    return ends


def split_released(text: str) -> tuple[list[Span], list[int], Span | None]:
    """The released split as spans: step k covers from the previous prefix's end (from "Step 1", or
    the start, for the first) to its own prefix end; prefix ends as :func:`released_prefix_ends`."""
    ends = released_prefix_ends(text)
    spans: list[Span] = []
    first = text.find("Step 1")
    for i, b in enumerate(ends):
        a = (first if 0 <= first < b else 0) if i == 0 else min(ends[i - 1], b)
        spans.append((a, b))
    fa_at = text.find("Final answer")
    fa = strip_span(text, fa_at, len(text)) if fa_at >= 0 else None
    return spans, ends, fa


def split_heuristic(text: str) -> tuple[list[Span], Span | None]:
    """DreamPRM-1.5's free-form split: "Step k" headers, else numbered lines, else blank-line blocks,
    else lines. A trailing "Answer:"/"Final answer:" line is returned separately."""
    spans, fa = split_dreamprm(text)
    if spans:
        return spans, fa
    fam = None
    for m in FINAL_ANSWER.finditer(text):
        fam = m
    if fam is None:  # "... so 5. Final answer: 5" inside the last line is not part of a step either
        for m in FINAL_ANSWER_INLINE.finditer(text):
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

    ``split``: ``"dreamprm"`` (v1 "Step k" template), ``"official"`` (the released v1 split, quirks
    included; ``final_answer_step`` is ignored), ``"heuristic"`` (1.5), any core splitter
    (``"blank_line"``, ``"step_k"``, ``"line"``, ``"re:<regex>"``) or a callable returning spans.
    ``final_answer_step`` appends the final-answer line as the last step (1.5 does, v1 does not).
    A response without steps gives a chain of length 0; the caller decides what that means.
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be text, got {type(response).__name__}")
    fa: Span | None = None
    ends: list[int] | None = None
    if split == "official":
        spans, ends, fa = split_released(response)
        final = response[fa[0]:fa[1]] if fa else None
        return Chain(question=question, response=response, spans=spans, image=image, final_answer=final,
                     meta=dict(meta), prefix_ends=ends)
    if split == "dreamprm":
        spans, ends, fa = split_dreamprm_ends(response)
    elif split == "heuristic":  # "Step k" headers keep their prefix ends; the other rules end at the step
        spans, ends, fa = split_dreamprm_ends(response)
        if not spans:
            spans, fa = split_heuristic(response)
            ends = None
    else:
        spans = [s.span for s in split_steps(response, split)]
    if final_answer_step and fa is not None:
        spans = [*spans, fa]
        ends = None if ends is None else [*ends, fa[1]]
    final = response[fa[0]:fa[1]] if fa else None
    return Chain(question=question, response=response, spans=list(spans), image=image, final_answer=final,
                 meta=dict(meta), prefix_ends=ends)
