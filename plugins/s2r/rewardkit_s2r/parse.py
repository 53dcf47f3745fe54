"""S²R trajectories: ``s1, v1, s2, v2, ..., sk, vk, <end>`` as plain text.

A trajectory is written as::

    <attempt 1>\\n\\nWait, let me recheck my solution.\\n\\n<verification 1>
    \\n\\nLet me try again.\\n\\n<attempt 2>\\n\\nWait, let me recheck my solution.\\n\\n<verification 2><eos>

:func:`parse` splits the text into *actions* (solve attempts and verifications) whose character
spans partition the text exactly:

* an attempt runs from its retry marker (``Let me try again.``; the text start for attempt 1) to
  the next verify marker, so the blank line before ``Wait,`` belongs to the attempt;
* a verification runs from its verify marker to the next retry marker (or the end).

Markers only count at the start of a line (``line_start=True``, the default) and only where the
format allows them: a verify marker inside a verification and a retry marker inside an attempt are
part of the text, so a model that writes "Wait, ..." or "Let me try again." mid-solution does not
split its attempt (the released code splits on ``Wait,`` anywhere; :func:`split_token_ids`
reproduces that on token ids).

Each attempt's answer is its last brace-matched ``\\boxed{}`` (normalised as the released code
does); each verification's verdict follows the released ``get_veri_answer`` rule: the last
``Therefore, the answer is X.`` with X correct/incorrect, else keywords, else *correct when no
attempt follows the verification and incorrect when one does* (a retry rejected the answer).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

VERIFY_MARKER = "Wait, let me recheck my solution."
RETRY_MARKER = "Let me try again."
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
VERDICT_CORRECT = "Therefore, the answer is correct."
VERDICT_INCORRECT = "Therefore, the answer is incorrect."
BOXED = "\\boxed{"


@dataclass(frozen=True)
class Markers:
    """The literal strings that structure an S²R trajectory (all configurable).

    ``verify``/``retry`` start a verification / a new attempt in text parsing. ``split_verify`` and
    ``split_retry`` are what the released code splits on, as token ids (:func:`split_token_ids`).
    ``verdict_regex`` has one group, the verdict word; ``correct_words``/``incorrect_words`` are
    the accepted values; the keyword lists are the fallback when no explicit verdict is found.
    """

    verify: str = VERIFY_MARKER
    retry: str = RETRY_MARKER
    line_start: bool = True
    verdict_regex: str = r"Therefore, the answer is (.+?)\."
    correct_words: tuple[str, ...] = ("correct",)
    incorrect_words: tuple[str, ...] = ("incorrect",)
    incorrect_keywords: tuple[str, ...] = ("is incorrect", "cannot verify")
    correct_keywords: tuple[str, ...] = ("is correct", "is indeed", "verified to be correct", "verified as correct")
    split_verify: str = "Wait,"
    split_retry: str = "Let me try again.\n\n"
    # how format() glues the parts: "\n\n" + marker + "\n\n"
    sep: str = "\n\n"

    def __post_init__(self) -> None:
        if not self.verify or not self.retry:
            raise ValueError("S2R markers must be non-empty strings")
        if self.verify == self.retry:
            raise ValueError("the verify and retry markers must differ")
        if re.compile(self.verdict_regex).groups < 1:
            raise ValueError("verdict_regex needs one capturing group (the verdict word)")


DEFAULT_MARKERS = Markers()


def get_markers(markers: Markers | dict[str, Any] | None) -> Markers:
    if markers is None:
        return DEFAULT_MARKERS
    if isinstance(markers, Markers):
        return markers
    if isinstance(markers, dict):
        return Markers(**{k: tuple(v) if isinstance(v, list) else v for k, v in markers.items()})
    raise TypeError(f"markers must be a Markers, a dict or None; got {type(markers).__name__}")


@dataclass(slots=True)
class Action:
    """One action of a trajectory: a solve attempt or a verification.

    ``start``/``end`` is the action's span; ``body_start`` is where its text starts after the
    marker (``text[start:body_start]`` is the marker, empty for the first attempt). ``index`` is
    the round (attempt j and verification j share it).
    """

    kind: str  # "solve" | "verify"
    index: int
    start: int
    end: int
    body_start: int
    answer: str | None = None  # solve: normalised last \boxed{} content
    verdict: bool | None = None  # verify: True = "correct"
    verdict_source: str | None = None  # "explicit" | "keyword" | "default"

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)

    @property
    def marker_span(self) -> tuple[int, int]:
        return (self.start, self.body_start)


@dataclass
class S2RTrajectory:
    text: str
    actions: list[Action] = field(default_factory=list)

    @property
    def attempts(self) -> list[Action]:
        return [a for a in self.actions if a.kind == "solve"]

    @property
    def verifications(self) -> list[Action]:
        return [a for a in self.actions if a.kind == "verify"]

    @property
    def final_answer(self) -> str | None:
        attempts = self.attempts
        return attempts[-1].answer if attempts else None

    @property
    def num_rounds(self) -> int:
        return len(self.attempts)

    @property
    def ends_with_verification(self) -> bool:
        return bool(self.actions) and self.actions[-1].kind == "verify"

    def verified(self, action: Action) -> Action | None:
        """The attempt a verification checks (the attempt right before it)."""
        i = self.actions.index(action)
        return self.actions[i - 1] if action.kind == "verify" and i > 0 else None

    def segment_text(self, action: Action) -> str:
        return self.text[action.start:action.end]

    def body(self, action: Action) -> str:
        return self.text[action.body_start:action.end]


# -- answers ------------------------------------------------------------------------------------

_BRACES = re.compile(r"[{}]")


def last_boxed(text: str, start: int = 0, end: int | None = None) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` in ``text[start:end]``, or None."""
    end = len(text) if end is None else end
    at = text.rfind(BOXED, start, end)
    while at >= 0:
        depth = 1
        for m in _BRACES.finditer(text, at + len(BOXED), end):
            depth += 1 if m.group() == "{" else -1
            if depth == 0:
                return text[at + len(BOXED): m.start()]
        at = text.rfind(BOXED, start, at)
    return None


_FRAC_FIX = re.compile(r"\\frac\{([^{}]*)\}([0-9A-Za-z])")
_TEXT_CMD = re.compile(r"\\(?:text|mbox|mathrm)\{([^{}]*)\}")
_PLAIN = re.compile(r"[0-9A-Za-z.+\-,:/()^*]*")
_NEEDS_WORK = frozenset("\\$= \n\t")


def normalize_answer(answer: str | None) -> str | None:
    """A boxed answer cleaned up for comparison: first line, strip ``: . /``, spaces, ``\\$`` and
    ``$``, ``\\text{}``/``\\left``/``\\right``; keep what follows the last ``=``; ``\\frac{a}b`` →
    ``\\frac{a}{b}``. (The released code's own normalisation is :func:`rewardkit_s2r.code.code_normalize`.)"""
    if answer is None:
        return None
    if _PLAIN.fullmatch(answer):  # fast path: digits, letters, signs (most answers)
        a = answer.strip(":./")
        return a or None
    a = answer.strip().split("\n", 1)[0]
    if not _NEEDS_WORK.isdisjoint(a) or "\\" in a:
        a = a.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\$", "").replace("$", "")
        if "\\" in a:
            a = _TEXT_CMD.sub(r"\1", a)
        if "=" in a:
            a = a.rsplit("=", 1)[1]
        a = a.replace(" ", "").replace("\t", "")
    a = a.strip().strip(":./").strip()
    if "\\frac" in a:
        a = _FRAC_FIX.sub(r"\\frac{\1}{\2}", a)
    return a or None


# -- verdicts -----------------------------------------------------------------------------------

_VERDICT_CACHE: dict[str, re.Pattern[str]] = {}


def parse_verdict(text: str, *, is_last: bool, markers: Markers = DEFAULT_MARKERS, start: int = 0,
                  end: int | None = None) -> tuple[bool, str]:
    """The verdict of a verification text: ``(is_correct, source)``.

    Rule of the released code (``get_veri_answer``): the last explicit verdict sentence whose word
    is correct/incorrect; else keywords (incorrect first); else correct when this is the last
    verification (no retry follows) and incorrect otherwise.
    """
    pat = _VERDICT_CACHE.get(markers.verdict_regex)
    if pat is None:
        pat = _VERDICT_CACHE[markers.verdict_regex] = re.compile(markers.verdict_regex)
    end = len(text) if end is None else end
    explicit: bool | None = None
    for m in pat.finditer(text, start, end):
        word = m.group(1).strip().lower()
        if word in markers.correct_words:
            explicit = True
        elif word in markers.incorrect_words:
            explicit = False
    if explicit is not None:
        return explicit, "explicit"
    low = text[start:end].lower()
    if any(k in low for k in markers.incorrect_keywords):
        return False, "keyword"
    if any(k in low for k in markers.correct_keywords):
        return True, "keyword"
    return is_last, "default"


# -- text parsing -------------------------------------------------------------------------------

def _find_marker(text: str, marker: str, pos: int, line_start: bool) -> int:
    """Index of the next occurrence of ``marker`` at or after ``pos`` (at a line start when
    ``line_start``), or -1. ``str.find`` scans in C, far faster than a multiline regex."""
    at = text.find(marker, pos)
    if line_start:
        while at > 0 and text[at - 1] != "\n":
            at = text.find(marker, at + 1)
    return at


def _skip_blank(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


def split_actions(text: str, markers: Markers = DEFAULT_MARKERS) -> list[tuple[str, int, int, int, int]]:
    """``(kind, start, body_start, body_end, end)`` for every action; the spans ``[start, end)``
    partition ``text``; ``body_end < end`` only when the text ends on a marker, which opens no action.

    A verify marker only opens a verification after an attempt, a retry marker only opens an
    attempt after a verification; any other marker occurrence is ordinary text. The blank after
    a marker belongs to the marker (``body_start`` is on the first character after it).
    """
    out: list[tuple[str, int, int, int, int]] = []
    kind, start, body = "solve", 0, 0
    verify, retry, line_start = markers.verify, markers.retry, markers.line_start
    while True:
        marker = verify if kind == "solve" else retry
        at = _find_marker(text, marker, body, line_start)
        if at < 0:
            break
        out.append((kind, start, body, at, at))
        kind = "verify" if kind == "solve" else "solve"
        start, body = at, _skip_blank(text, at + len(marker))
    if out and body >= len(text):
        # the text ends on a marker: like the released code, the marker opens no action; it stays in
        # the previous action's span (a verification followed by a retry marker is still not "last")
        prev_kind, prev_start, prev_body, prev_end, _ = out.pop()
        out.append((prev_kind, prev_start, prev_body, prev_end, len(text)))
        return out
    out.append((kind, start, body, len(text), len(text)))
    # an empty first attempt (text starts with the verify marker) is still an attempt: keep it so
    # verification j always follows attempt j
    return out


def parse(text: str, markers: Markers | dict[str, Any] | None = None) -> S2RTrajectory:
    """Parse an S²R trajectory into actions with exact spans, answers and verdicts."""
    mk = get_markers(markers)
    parts = split_actions(text, mk)
    actions: list[Action] = []
    round_ = 0
    for i, (kind, start, body, body_end, end) in enumerate(parts):
        if kind == "solve":
            round_ += 1 if i > 0 else 0
            answer = normalize_answer(last_boxed(text, body, body_end))
            actions.append(Action("solve", round_, start, end, body, answer=answer))
        else:
            # a verification followed by a retry marker is not the last one, even with nothing after it
            is_last = i == len(parts) - 1 and body_end == end
            verdict, source = parse_verdict(text, is_last=is_last, markers=mk, start=body, end=body_end)
            actions.append(Action("verify", round_, start, end, body, verdict=verdict, verdict_source=source))
    return S2RTrajectory(text, actions)


def format_trajectory(attempts: Sequence[str], verifications: Sequence[str],
                      markers: Markers | dict[str, Any] | None = None) -> str:
    """Build a trajectory the way the released data construction does.

    ``len(verifications)`` is ``len(attempts)`` (every attempt verified) or one less (the last
    attempt has no verification yet). Parts are stripped and glued with ``sep + marker + sep``.
    """
    mk = get_markers(markers)
    if not attempts:
        raise ValueError("a trajectory needs at least one attempt")
    if len(verifications) not in (len(attempts), len(attempts) - 1):
        raise ValueError(f"{len(attempts)} attempts need {len(attempts)} (or one fewer) verifications, "
                         f"got {len(verifications)}")
    out = []
    for j, attempt in enumerate(attempts):
        if j:
            out.append(f"{mk.sep}{mk.retry}{mk.sep}")
        out.append(attempt.strip())
        if j < len(verifications):
            out.append(f"{mk.sep}{mk.verify}{mk.sep}")
            out.append(verifications[j].strip())
    return "".join(out)


# -- token-id splitting (the released code's way) -----------------------------------------------

def _find_all(seq: Sequence[int], sub: Sequence[int]) -> list[int]:
    if not sub:
        return []
    k = len(sub)
    first = sub[0]
    sub = list(sub)
    hits = []
    i = 0
    n = len(seq)
    while i <= n - k:
        if seq[i] == first and list(seq[i:i + k]) == sub:
            hits.append(i)
            i += k
        else:
            i += 1
    return hits


def split_token_ids(ids: Sequence[int], tokenizer: Any = None, markers: Markers | dict[str, Any] | None = None, *,
                    verify_ids: Sequence[int] | None = None,
                    retry_ids: Sequence[int] | None = None) -> list[tuple[str, int, int]]:
    """Split completion token ids on the marker token ids, as the released RL code does.

    The markers ``split_verify`` (``Wait,``) and ``split_retry`` (``Let me try again.\\n\\n``) are
    tokenized standalone; each occurrence of those id strings is a ``"marker"`` segment (the
    code's zero-reward "part 0"), content after a verify marker is ``"verify"``, after a retry
    marker ``"solve"``. Consecutive identical markers are merged (a second ``Wait,`` inside a
    verification stays in it). Returns ``(kind, start, end)`` token ranges covering ``ids``.
    A marker that tokenizes differently in context is simply not found: compare with
    :func:`parse` to count split failures.
    """
    mk = get_markers(markers)
    if verify_ids is None or retry_ids is None:
        if tokenizer is None:
            raise ValueError("split_token_ids needs a tokenizer or explicit verify_ids/retry_ids")
        verify_ids = tokenizer.encode(mk.split_verify, add_special_tokens=False)
        retry_ids = tokenizer.encode(mk.split_retry, add_special_tokens=False)
    ids = list(ids)
    hits = sorted([(p, "verify", len(verify_ids)) for p in _find_all(ids, verify_ids)]
                  + [(p, "solve", len(retry_ids)) for p in _find_all(ids, retry_ids)])
    out: list[tuple[str, int, int]] = []
    kind, start, pos = "solve", 0, 0
    for p, new_kind, k in hits:
        if p < pos or new_kind == kind:  # overlapping or consecutive identical marker: merged
            continue
        if p > start:
            out.append((kind, start, p))
        out.append(("marker", p, p + k))
        kind, start, pos = new_kind, p + k, p + k
    if start < len(ids) or not out:
        out.append((kind, start, len(ids)))
    return out


# -- the regex-only baseline (for bench/s2r_parse.py) -------------------------------------------

_RE_SPLIT = re.compile(r"(Wait,|Let me try again\.\n\n)")
_RE_VERDICT = re.compile(r"Therefore, the answer is (.+?)\.")
_RE_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def regex_parse(text: str) -> list[tuple[str, str | None]]:
    """A naive regex-only parser: split on the markers anywhere, last flat ``\\boxed{}`` per
    attempt, last verdict sentence per verification. No spans, no nesting, no stray-marker rule."""
    parts = _RE_SPLIT.split(text)
    out: list[tuple[str, str | None]] = []
    kind = "solve"
    for part in parts:
        if part == "Wait,":
            kind = "verify"
            continue
        if part.startswith("Let me try again"):
            kind = "solve"
            continue
        if kind == "solve":
            boxes = _RE_BOXED.findall(part)
            out.append(("solve", boxes[-1] if boxes else None))
        else:
            verdicts = _RE_VERDICT.findall(part)
            out.append(("verify", verdicts[-1] if verdicts else None))
    return out
