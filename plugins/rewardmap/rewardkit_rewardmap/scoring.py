"""Pure scoring rules of RewardMap (arXiv 2510.02240), as the released code computes them.

Everything here is a plain function on strings and a :class:`Metro` (a compiled metro map), so the
rules can be tested one by one and run fast (no I/O, cached station normalisation).

Planning answers (ReasonMap route questions) get ``10·acc + α·detail``; ReasonMap-Plus answers
(true/false and counting) get ``10·acc``; both are multiplied by the difficulty weight ``W``.
Where the paper and the official code differ, the code is the default and the paper is a flag
(see docs/methods/rewardmap.md).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

PLANNING = "planning"
PLUS_TYPES = ("TorF1", "TorF2", "Counting1", "Counting2", "Counting3")
ALL_TYPES = (*PLUS_TYPES, PLANNING)

# ReasonMap's answer labels; the correctness pass checks them case-sensitively, the detail pass
# case-insensitively (both then read the fields with the same case-sensitive patterns)
LABELS = ("Route Name:", "Departure Stop:", "Arrival Stop:")
LABELS_LOWER = tuple(label.lower() for label in LABELS)
_ROUTE_RE = re.compile(r"Route Name: (.*?)\n")
_DEPART_RE = re.compile(r"Departure Stop: (.*?)\n")
_PAREN_RE = re.compile(r"[\(\（][^\)\）]*[\)\）]")
_SPACE_RE = re.compile(r"[\s\-]+")
WRONG = "Wrong"  # the official code's placeholder for a field it could not read

# suffixes the official reward loader strips from metro JSON stop names
STOP_SUFFIXES = (" (Transfer Station)", " (Branch-starting Station)", "（换乘站）", "（支线起始站）")

DEFAULT_GAMMA = {"easy": 1.0, "middle": 1.2, "hard": 1.5}
DEFAULT_BETA = (0.0, 0.5)  # (0 transfers, >= 1 transfer)


# -- station normalisation ----------------------------------------------------------------------

# the replacement chain of the official ``clean_string`` in its order; note that the order makes
# "Univ." and "University" both end as "universityersity" (and "Tech." / "Technology" as
# "technologynology") while a bare "Univ" becomes "university": reproduced on purpose
_REPLACEMENTS = (
    ("Metro", ""), ("metro", ""), (",", ""), ("*", ""), ("\n", ""), ("'", ""),
    ("Univ.", "University"), ("Univ", "University"), ("Tech.", "Technology"), ("Tech", "Technology"),
    ("road", "lu"), ("Road", "lu"),
    ("Station", ""), ("station", ""), ("Asian Games Village", "yayuncun"),
)


@lru_cache(maxsize=262_144)
def clean_string(s: str) -> str:
    """Station-name normalisation of the official RewardMap reward (``clean_string``)."""
    for old, new in _REPLACEMENTS:
        if old in s:
            s = s.replace(old, new)
    if s.endswith("站"):
        s = s[:-1]
    s = _PAREN_RE.sub("", s)
    return _SPACE_RE.sub("", s).lower()


def strip_stop_suffix(name: str) -> str:
    for suffix in STOP_SUFFIXES:
        name = name.replace(suffix, "")
    return name


def route_alias(name: str, aliases: bool = True) -> str:
    """The official Beijing hacks: a name with 八通 is "Line 1", one with 大兴 is "Line 4"."""
    if aliases:
        if "八通" in name:
            name = "Line 1"
        if "大兴" in name:
            name = "Line 4"
    return name


# -- metro maps ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metro:
    """A metro map compiled for scoring: line name -> set of normalised stop names."""

    lines: dict[str, frozenset[str]]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Metro:
        if not isinstance(data, Mapping):
            raise TypeError(f"a metro map is a mapping line name -> list of stops, got {type(data).__name__}")
        lines: dict[str, frozenset[str]] = {}
        for line, stops in data.items():
            if stops is None:  # a datasets struct column fills lines of other maps with None
                continue
            if isinstance(stops, str) or not isinstance(stops, Iterable):
                raise TypeError(f"metro line {line!r}: expected a list of stop names, got {type(stops).__name__}")
            lines[str(line)] = frozenset(clean_string(strip_stop_suffix(str(s))) for s in stops)
        return cls(lines)

    def has_line(self, name: str) -> bool:
        return name in self.lines

    def on_line(self, name: str, cleaned_stop: str) -> bool:
        return cleaned_stop in self.lines[name]


# -- planning answers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    route: str      # text after "Route Name: " up to the newline, stripped; "Wrong" when unreadable
    depart: str     # clean_string of the departure stop; "Wrong" when unreadable
    arrive: str     # clean_string of the whole rest of the section after the last "Arrival Stop:"
    strict: bool    # the three labels appear with their exact case (the correctness pass needs it)
    fields_ok: bool  # Route Name and Departure Stop lines were both read


def parse_sections(text: str) -> list[Section]:
    """Split a planning answer into route sections exactly as the official reward does.

    The text is split on every literal ``--``; a section counts when it holds the three labels
    (case-insensitively; :attr:`Section.strict` says whether they appear with their exact case).
    """
    out: list[Section] = []
    for section in text.split("--"):
        if not section.strip():
            continue
        strict = all(label in section for label in LABELS)
        if not strict:
            low = section.lower()
            if not all(label in low for label in LABELS_LOWER):
                continue
        m_route = _ROUTE_RE.search(section)
        m_depart = _DEPART_RE.search(section)
        route = m_route.group(1).strip() if m_route else WRONG
        depart = clean_string(m_depart.group(1)) if m_depart else WRONG
        arrive = clean_string(section.split("Arrival Stop:")[-1].strip())
        out.append(Section(route, depart, arrive, strict, m_route is not None and m_depart is not None))
    return out


def _endpoints_match(sections: Sequence[Section], station1: str, station2: str) -> bool:
    # the official code cleans the already-cleaned fields a second time
    return (clean_string(sections[0].depart) == clean_string(station1)
            and clean_string(sections[-1].arrive) == clean_string(station2))


def planning_accuracy(sections: Sequence[Section], metro: Metro, station1: str, station2: str,
                      *, aliases: bool = True) -> bool:
    """ReasonMap's validity check (Algorithm 1): endpoints, line names, stop membership, transfers.

    Only sections whose labels have their exact case take part. The route is not compared with a
    reference and need not be optimal.
    """
    secs = [s for s in sections if s.strict]
    if not secs or not _endpoints_match(secs, station1, station2):
        return False
    for i, sec in enumerate(secs):
        name = route_alias(sec.route, aliases)
        if not metro.has_line(name):
            return False
        if not (metro.on_line(name, clean_string(sec.depart)) and metro.on_line(name, clean_string(sec.arrive))):
            return False
        if i < len(secs) - 1 and clean_string(sec.arrive) != clean_string(secs[i + 1].depart):
            return False
    return True


def planning_detail(sections: Sequence[Section], metro: Metro, station1: str, station2: str,
                    transfer_count: int, *, transfer_penalty: str = "official", aliases: bool = True,
                    cap: float = 10.0) -> float:
    """The partial-credit term R_detail of the official code (``get_detailed_reward_planning``).

    0 unless the first departure is ``station1`` and the last arrival ``station2``; then +2, and per
    segment i (0-based), with q = ``transfer_count``: -5 when ``i + 1 > q`` (official) or ``i > q``
    (``transfer_penalty="paper"``); +4 (q = 0: the line really holds both endpoints) or +3 (q >= 1:
    any existing line) for a line name that is a key of the map; +1 when both stops are on that line,
    it is not the last segment, its arrival is the next departure and ``i + 1 <= q``. Capped at
    ``cap`` from above, no lower bound.
    """
    if transfer_penalty not in ("official", "paper"):
        raise ValueError(f"transfer_penalty must be 'official' or 'paper', got {transfer_penalty!r}")
    if not sections or not _endpoints_match(sections, station1, station2):
        return 0.0
    q = transfer_count
    s1, s2 = clean_string(station1), clean_string(station2)
    score = 2.0
    n = len(sections)
    for i, sec in enumerate(sections):
        over = (i + 1) > q if transfer_penalty == "official" else i > q
        if over:
            score -= 5
        name = route_alias(sec.route, aliases)
        if not metro.has_line(name):
            continue
        if q == 0:
            if metro.on_line(name, s1) and metro.on_line(name, s2):
                score += 4
        else:
            score += 3
        if metro.on_line(name, clean_string(sec.depart)) and metro.on_line(name, clean_string(sec.arrive)):
            if i < n - 1 and clean_string(sec.arrive) == clean_string(sections[i + 1].depart) and (i + 1) <= q:
                score += 1
    return min(score, cap)


def planning_format_ok(sections: Sequence[Section]) -> bool:
    """Our explicit format term (the paper's R_format, which the code lacks): at least one section
    with exact-case labels, and every such section has readable Route Name and Departure Stop lines."""
    strict = [s for s in sections if s.strict]
    return bool(strict) and all(s.fields_ok for s in strict)


# -- ReasonMap-Plus answers ---------------------------------------------------------------------

ANSWER_PHRASES = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
_OXED_RE = re.compile(r"oxed{(.*)}", flags=re.S)


def _first_sentence(s: str) -> str:
    return s.split("\n")[0].split(". ")[0]


def _fix_sqrt(s: str) -> str:
    parts = s.split("\\sqrt")
    out = parts[0]
    for part in parts[1:]:
        out += "\\sqrt{" + part[0] + "}" + part[1:] if part and part[0] != "{" else "\\sqrt" + part
    return out


def _fix_fracs(s: str) -> str:
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part and part[0] == "{":
            out += part
            continue
        if len(part) < 2:
            return s
        a, b, rest = part[0], part[1], part[2:]
        out += ("{" + a + "}{" + b + "}" + rest) if b != "{" else ("{" + a + "}" + b + rest)
    return out


def _fix_slash(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def _strip_latex(s: str) -> str:
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", "")):
        s = s.replace(old, new)
    s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2:
        s = s.split("=")[-1]
    if len(s.split("\\approx")) == 2:
        s = s.split("\\approx")[-1]
    if "sqrt" in s:
        s = _fix_sqrt(s)
    s = s.replace(" ", "")
    if "sqrt" in s:
        s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_slash(s)


def find_math_answer(s: str) -> str:
    """The official answer normaliser: lowercase, take the boxed content, the part after "=",
    drop spaces and LaTeX decorations."""
    s = s.lower().replace("{}", "")
    found = _OXED_RE.findall(s)
    ans = found[-1] if found else s
    close, open_ = ans.find("}"), ans.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"), ("\n", ""),
                     ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""), ("\\right", ""),
                     ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""), ("{units}", ""), ("units", ""),
                     ("{km}", ""), ("km", "")):
        ans = ans.replace(old, new)
    return _strip_latex(ans)


def extract_plus_answer(response: str) -> str:
    """The answer of a ReasonMap-Plus response as the official reward reads it.

    The last ``\\boxed{}``; without one, the text after "the final answer is" / "the answer is" /
    "the correct answer is" / "the answer should be" (and their capitalised forms), first line and
    first sentence; then :func:`find_math_answer`, ``rstrip(".")`` and ``lstrip(":")``.
    """
    ans = response
    if "oxed{" not in ans:
        for phrase in ANSWER_PHRASES:
            for flag in (phrase, phrase.replace("the", "The")):
                had = flag in ans
                ans = ans.split(flag)[-1].strip()
                if had:
                    ans = _first_sentence(ans)
    elif ans.count("oxed{") > 1:
        ans = "\\boxed{" + ans.split("oxed{")[-1]
    return find_math_answer(ans).rstrip(".").lstrip(":").strip()


def truth_value(answer: Any) -> int:
    """Ground truth of a Plus row as an int (accepts ints, bools, floats with no fraction and digit strings)."""
    if isinstance(answer, bool):
        return int(answer)
    if isinstance(answer, int):
        return answer
    if isinstance(answer, float) and answer.is_integer():
        return int(answer)
    if isinstance(answer, str) and answer.strip().lstrip("+-").isdigit():
        return int(answer.strip())
    raise ValueError(f"ReasonMap-Plus ground truth must be an integer (1/0, a count or an option index), got {answer!r}")


def plus_accuracy(qtype: str, model_answer: str, truth: int) -> bool:
    """Exact match of an extracted Plus answer: yes/no, an integer, or an option letter a-d."""
    if qtype in ("TorF1", "TorF2"):
        return model_answer.lower() == ("yes" if truth == 1 else "no")
    if qtype in ("Counting2", "Counting3"):
        try:
            return int(model_answer) == truth
        except (ValueError, TypeError):
            return False
    if qtype == "Counting1":
        letter = model_answer.lower()
        return letter in ("a", "b", "c", "d") and "abcd".index(letter) == truth
    raise ValueError(f"unknown ReasonMap-Plus type {qtype!r}; expected one of {PLUS_TYPES}")


def plus_format_ok(qtype: str, response: str, model_answer: str) -> bool:
    """Our explicit format term for Plus answers: a ``\\boxed{}`` holding an answer of the right kind."""
    if "oxed{" not in response:
        return False
    if qtype in ("TorF1", "TorF2"):
        return model_answer.lower() in ("yes", "no")
    if qtype == "Counting1":
        return model_answer.lower() in ("a", "b", "c", "d")
    try:
        int(model_answer)
    except (ValueError, TypeError):
        return False
    return True


# -- difficulty weights -------------------------------------------------------------------------

def transfer_count(value: Any) -> int:
    """``question_transfer_count`` as a non-negative int; anything else is an error (as in the code)."""
    err = ValueError(f"question_transfer_count must be a non-negative integer, got {value!r}")
    if isinstance(value, bool) or value is None:
        raise err
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise err
        return int(value.strip())
    try:
        q = operator.index(value)  # int, numpy integers
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            q = int(value)
        else:
            raise err from None
    if q < 0:
        raise ValueError(f"question_transfer_count {q} is not valid (negative)")
    return q


def difficulty_weight(qtype: str, difficulty_city: str, q: int | None = None, *,
                      gamma: Mapping[str, float] = DEFAULT_GAMMA,
                      beta: Sequence[float] = DEFAULT_BETA) -> float:
    """W = γ[map difficulty] (+ β1 for a planning question needing >= 1 transfer, β0 otherwise)."""
    if difficulty_city not in gamma:
        raise ValueError(f"difficulty_city {difficulty_city!r} is not recognised; expected one of {sorted(gamma)}")
    w = float(gamma[difficulty_city])
    if qtype == PLANNING:
        if q is None or q < 0:
            raise ValueError(f"question_transfer_count {q!r} is not valid")
        w += float(beta[1] if q > 0 else beta[0])
    elif qtype not in PLUS_TYPES:
        raise ValueError(f"type {qtype!r} is not recognised; expected one of {ALL_TYPES}")
    return w
