"""How a completion is split into steps or turns, with exact character spans.

Every span is ``(start, end)`` into the original text, so ``text[start:end]`` is the step, and
spans map onto the tokens of ``completion_ids`` through :func:`token_char_ends`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int]

BLANK_LINE = re.compile(r"\n[ \t]*\n")
# "Step 1:", "Step 12.", "## Step 3 -" at the start of a line; digits are matched whole so
# "Step 10" never splits as "Step 1" + "0"
STEP_K = re.compile(r"(?im)^[ \t>#*]*step[ \t]+\d+\b[ \t]*[:.)\-]?")


@dataclass(frozen=True)
class Step:
    text: str
    start: int
    end: int

    @property
    def span(self) -> Span:
        return (self.start, self.end)


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    index: int


@dataclass
class Trajectory:
    """A completion split into an optional thinking part, an answer part, and steps."""

    text: str
    steps: list[Step]
    thinking: Span | None = None
    answer: Span = (0, 0)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def thinking_text(self) -> str:
        return "" if self.thinking is None else self.text[self.thinking[0]:self.thinking[1]]

    @property
    def answer_text(self) -> str:
        return self.text[self.answer[0]:self.answer[1]]


def strip_span(text: str, start: int, end: int) -> Span | None:
    """``(start, end)`` narrowed past surrounding whitespace; None when nothing else is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _split_on(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[Step]:
    steps: list[Step] = []
    pos = start
    for m in pattern.finditer(text, start, end):
        span = strip_span(text, pos, m.start())
        if span:
            steps.append(Step(text[span[0]:span[1]], *span))
        pos = m.end()
    span = strip_span(text, pos, end)
    if span:
        steps.append(Step(text[span[0]:span[1]], *span))
    return steps


def _split_at_headers(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[Step]:
    """Each match starts a step that runs to the next match; text before the first is a step too."""
    cuts = [m.start() for m in pattern.finditer(text, start, end)]
    bounds = [start, *cuts, end]
    steps = []
    for a, b in zip(bounds, bounds[1:]):
        span = strip_span(text, a, b)
        if span:
            steps.append(Step(text[span[0]:span[1]], *span))
    return steps


Splitter = str | re.Pattern[str] | Callable[[str], Sequence[Span]]


def split_steps(text: str, how: Splitter = "blank_line", *, start: int = 0, end: int | None = None) -> list[Step]:
    """Split ``text[start:end]`` into steps.

    ``how`` is ``"blank_line"`` (paragraphs), ``"step_k"`` ("Step k:" headers start a step),
    ``"line"``, a regex (a compiled pattern or a string starting with ``re:``) whose matches
    separate steps, or a callable returning spans. Empty steps are dropped; spans are exact.
    """
    end = len(text) if end is None else end
    if callable(how) and not isinstance(how, re.Pattern):
        steps = []
        for a, b in how(text[start:end]):
            if not (0 <= a <= b <= end - start):
                raise ValueError(f"splitter returned span {(a, b)} outside the text of length {end - start}")
            span = strip_span(text, start + a, start + b)
            if span:
                steps.append(Step(text[span[0]:span[1]], *span))
        return steps
    if how == "blank_line":
        return _split_on(text, BLANK_LINE, start, end)
    if how == "line":
        return _split_on(text, re.compile(r"\n"), start, end)
    if how == "step_k":
        return _split_at_headers(text, STEP_K, start, end)
    if isinstance(how, re.Pattern):
        return _split_on(text, how, start, end)
    if isinstance(how, str) and how.startswith("re:"):
        return _split_on(text, re.compile(how[3:]), start, end)
    raise ValueError(f"unknown step splitter {how!r}: use 'blank_line', 'step_k', 'line', 're:<regex>', "
                     "a compiled pattern or a callable")


def split_thinking(text: str, open_tag: str = "<think>", close_tag: str = "</think>") -> tuple[Span | None, Span]:
    """Split ``<think>…</think>`` from the answer: returns (thinking span or None, answer span).

    The thinking is between the first opening tag and the first closing tag after it. A closing tag
    with no opening tag (chat templates often put ``<think>`` in the prompt) makes everything
    before it the thinking. An unclosed block is all thinking and an empty answer.
    """
    open_at = text.find(open_tag)
    close_at = text.find(close_tag, 0 if open_at < 0 else open_at + len(open_tag))
    if close_at < 0:
        if open_at < 0:
            return None, (0, len(text))
        return (open_at + len(open_tag), len(text)), (len(text), len(text))
    think_start = 0 if open_at < 0 else open_at + len(open_tag)
    return (think_start, close_at), (close_at + len(close_tag), len(text))


def parse_trajectory(text: str, how: Splitter = "blank_line", *, think: bool = True,
                     open_tag: str = "<think>", close_tag: str = "</think>") -> Trajectory:
    """Steps of the thinking part when there is one (else of the whole text), plus both spans."""
    if think:
        thinking, answer = split_thinking(text, open_tag, close_tag)
    else:
        thinking, answer = None, (0, len(text))
    region = thinking if thinking is not None else answer
    steps = split_steps(text, how, start=region[0], end=region[1])
    return Trajectory(text=text, steps=steps, thinking=thinking, answer=answer)


def turns_of(messages: Sequence[dict[str, Any]]) -> list[Turn]:
    """The turns of a conversational completion, in order."""
    from rewardkit.reward import message_text

    return [Turn(role=m.get("role", "assistant"), content=message_text(m.get("content")), index=i)
            for i, m in enumerate(messages)]


# -- spans -> tokens --------------------------------------------------------------------------

def offset_char_ends(offsets: Sequence[Sequence[int]]) -> list[int]:
    """Character end of each token from a tokenizer's ``(start, end)`` offsets.

    Byte-level BPE splits a multi-byte character (an emoji, most CJK characters) over several
    tokens that all report the character's offsets. Only the token completing the character ends
    after it; the ones before end where the character starts (overlapping offsets), so a step
    ending on such a character takes all of its bytes.
    """
    ends = [int(e) for _, e in offsets]
    for k in range(len(ends) - 1):
        nxt = int(offsets[k + 1][0])
        if nxt < ends[k]:
            ends[k] = nxt
    return ends


def clean_prefix_len(prefix: str, text: str) -> int:
    """Length of the part of a decoded token prefix that is also a prefix of ``text``: a prefix cut
    inside a multi-byte character decodes to a replacement character, which is not counted."""
    n = min(len(prefix), len(text))
    if prefix[:n] == text[:n]:
        return n
    k = 0
    while k < n and prefix[k] == text[k]:
        k += 1
    return k


def token_char_ends(completion_ids: Sequence[int], tokenizer: Any, text: str | None = None) -> list[int]:
    """For each token of ``completion_ids``, the character offset where it ends in the decoded text.

    TRL's completion text is ``decode(completion_ids, skip_special_tokens=True)``. When re-encoding
    that text reproduces the ids (the usual case) the tokenizer's offsets are used directly; else
    prefixes are decoded one token at a time, which is exact for any tokenizer but quadratic.
    Special tokens end where the previous token ended; a token holding only part of a multi-byte
    character ends before that character (see :func:`offset_char_ends`).
    """
    ids = list(completion_ids)
    if text is None:
        text = tokenizer.decode(ids, skip_special_tokens=True)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    content_positions = [i for i, t in enumerate(ids) if t not in special]
    content_ids = [ids[i] for i in content_positions]
    ends = [0] * len(ids)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"] if enc["input_ids"] == content_ids else None
    except (NotImplementedError, TypeError, ValueError, KeyError):
        offsets = None
    if offsets is not None:
        content_ends = offset_char_ends(offsets)
    else:
        content_ends = [clean_prefix_len(tokenizer.decode(content_ids[: k + 1], skip_special_tokens=True), text)
                        for k in range(len(content_ids))]
    last = 0
    it = iter(content_ends)
    content = set(content_positions)
    for i in range(len(ids)):
        if i in content:
            last = max(last, next(it))
        ends[i] = last
    return ends


def step_token_ends(spans: Sequence[Span], char_ends: Sequence[int]) -> list[int]:
    """For each step span, the index (exclusive) of the first token past the step's end.

    A step ends on the first token whose text reaches the step's last character, so the token
    holding the step's final character belongs to that step.
    """
    import bisect

    out = []
    for _, end in spans:
        k = bisect.bisect_left(char_ends, end)
        out.append(min(k + 1, len(char_ends)))
    return out
