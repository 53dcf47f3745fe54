"""The released S²R code's rewards, reproduced operation by operation (``mode="code"``).

Released code: NineAbyss/S2R @ d3549405c9ccea977d7999e225aee4ba595a3e6d.

* answers — ``code/tools/answer_extraction.py`` (``strip_string``, ``answer_corrected_match``) and
  ``code/utils.py`` (``extract_and_process_boxed_answers``, ``get_soft_answer_correction``,
  ``get_rewards(strict=True)``): string normalisation and string comparison, no symbolic maths;
* verdicts — ``get_veri_answer`` of ``code/src/rloo_trainer.py``: exact lower-case words;
* segments and rewards — the loops of ``generate_experience_incot_splitmask`` (process level, markers
  merged) and ``generate_experience_incot_splitmask_rloo`` (outcome level, not merged): the completion
  ids are joined into a ``"_"``-separated string, cut at the EOS id, split with a regex on the id
  strings of ``Wait,`` and ``Let me try again.\\n\\n``, and each piece is decoded and scored;
* the running context baseline — its fixed whitelist of reward contexts (:data:`CODE_CONTEXT_KEYS`).

Two places differ, both for safety and both listed in docs/methods/s2r.md: the code's
``eval(model_answer)`` runs here as a bounded evaluator of numeric Python expressions
(:func:`code_eval`), and a gold that has no ``boxed{`` is read as ``\\boxed{gold}`` (the code would
extract an empty gold answer, which every answer-less attempt matches).
"""

from __future__ import annotations

import ast
import operator
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# reward contexts the released running baseline tracks (any other context always has baseline 0)
CODE_CONTEXT_KEYS: frozenset[str] = frozenset((
    '', 'R1', 'R1V1', 'R-1', 'R-1V1', 'R-1V1R-1', 'R-1V-1', 'R-1V1R-1V1', 'R-1V1R-1V1R-1', 'R1V-1',
    'R-1V1R-1V1R-1V1', 'R-1V1R-1V-1', 'R1V-1R1', 'R-1V1R1', 'R-1V1R-1V1R-1V1R-1', 'R1V-1R1V1', 'R-1V1R1V1',
    'R-1V1R-1V1R-1V1R-1V1', 'R-1V1R-1V1R-1V-1', 'R1V-1R-1', 'R-1V-1R-1', 'R-1V1R-1V1R-1V1R-1V1R-1',
    'R-1V1R-1V1R-1V1R-1V-1', 'R1V-1R-1V1', 'R-1V1R1V-1', 'R1V1R1', 'R-1V1R-1V1R1', 'R1V-1R1V-1',
    'R-1V1R-1V1R-1V1R-1V1R-1V1', 'R1V1R1V1', 'R-1V-1R-1V1', 'R1V-1R1V-1R1', 'R-1V-1R-1V-1',
    'R1V-1R-1V1R-1', 'R-1V-1R-1V1R-1', 'R-1V1R1V-1R-1', 'R1V-1R-1V1R1', 'R-1V1R1V-1R1', 'R-1V1R-1V-1R-1',
    'R1V-1R-1V-1', 'R-1V1R-1V1R-1V1R-1V1R-1V1R-1', 'R-1V1R-1V1R-1V1R-1V1R-1V-1', 'R-1V1R-1V1R1V-1',
    'R-1V1R-1V1R1V1', 'R1V-1R-1V1R-1V1', 'R-1V1R-1V1R-1V1R1', 'R-1V1R1V-1R-1V1', 'R-1V1V1',
    'R-1V-1R-1V1R-1V1', 'R1V-1R1V-1R1V1', 'R-1V-1R1', 'R1V-1R1V-1R-1', 'R1V-1R-1V1R1V1',
    'R1V-1R-1V1R-1V1R-1', 'R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1', 'R-1V1R-1V-1R-1V1', 'R-1V1R1V-1R1V1',
    'R-1V1R-1V1R1V-1R-1', 'R-1V1R1V-1R-1V1R-1', 'R1V-1R1V-1R1V-1', 'R1V1R-1', 'R-1V-1R-1V1R-1V1R-1',
    'R-1V1V1R-1', 'R-1V1R-1V1R-1V1R1V-1', 'R-1V1R1V-1R1V-1', 'R-1V1R-1V-1R-1V-1', 'R1V-1R-1V1R-1V1R-1V1',
    'R-1V-1R-1V1R-1V-1', 'R1V-1R1V-1R-1V1', 'R-1V1R-1V1R-1V-1R-1', 'R-1V1R-1V1R-1V1R-1V1R-1V1R-1V-1',
    'R1V-1R-1V1R1V-1', 'R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1R-1', 'R-1V1R-1V-1R-1V1R-1', 'R1V-1R1V-1R1V-1R1',
    'R-1V1R-1V1R1V-1R-1V1', 'R-1V-1R1V1', 'R-1V1R1V-1R-1V1R-1V1', 'R-1V1R-1V1V1', 'R-1R-1',
    'R-1V1R1V-1R-1V-1', 'R-1V1R-1V1R-1V1R1V1', 'R-1V1R-1V1R1V-1R1', 'R1V1R-1V1', 'R-1V1V1R-1V1',
    'R1V-1R-1V1R-1V-1', 'R-1V1V-1', 'R-1V1R-1V1R-1V1R1V-1R-1', 'R-1V1R-1V1R1V-1R-1V1R-1',
    'R-1V-1R-1V-1R-1', 'R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1', 'R1V-1R-1V1R-1V1R1', 'R1V1R1V-1',
    'R-1V-1R-1V1R-1V1R-1V1', 'R1V-1R-1V1R-1V1R-1V1R-1', 'R-1R-1V1', 'R-1V1R1V-1R1V-1R1',
    'R-1V1R1V-1R-1V1R1', 'R-1V1R1V-1R-1V1R-1V1R-1', 'R-1V-1R1V-1', 'R-1V-1R-1V1R-1V1R-1V-1',
    'R-1V1V1R-1V1R-1', 'R-1V1R-1V1R-1V1R-1V1R1', 'R1V-1R-1V1R1V-1R1', 'R-1V1R-1V1V1R-1', 'R1V1R1V-1R1',
    'R-1V1R1V-1R1V-1R-1', 'R1V-1R1V-1R1V-1R1V1', 'R1V1R-1V1R1', 'R-1V1R-1V1R-1V-1R-1V-1',
    'R-1V1R-1V1R-1V-1R-1V1', 'R1V-1R1V-1R-1V1R1', 'R-1V1R-1V1R-1V1R1V-1R-1V1', 'R1V-1R1V-1R-1V1R-1',
    'R1V-1R1V-1R-1V-1', 'R-1V1R-1V-1R-1V1R-1V-1', 'R-1V1R-1V1V-1', 'R-1V1R-1V1R1V-1R1V-1',
    'R-1V-1R-1V-1R-1V-1', 'R-1V1R-1V-1R-1V1R-1V1', 'R-1R-1V1R-1', 'R1V-1R-1V1R1V-1R-1', 'R-1V-1R-1V1R1',
    'R-1V1R-1V1R1V-1R-1V-1', 'R1V1R-1V-1', 'R-1V1V1R-1V-1', 'R-1V-1V1', 'R1V-1R1V1R1', 'R1V1R1V-1R1V1',
    'R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1R-1', 'R1V1R-1V1R-1', 'R-1V1R-1V1R1V-1R-1V1R-1V1',
    'R-1V-1R-1V1R-1V1R-1V1R-1', 'R1V-1R1V-1R1V-1R1V-1', 'R1V-1R-1V1R1V-1R1V-1', 'R1V-1R-1V1R-1V1R1V-1',
    'R1V-1R1V-1R1V-1R-1', 'R-1V-1R1V-1R-1', 'R1V-1R-1V1R-1V1R1V1', 'R-1V1R-1V1R-1V-1R-1V1R-1',
    'R-1V1R-1V1R-1V1V1', 'R-1V-1V1R-1', 'R-1V1R-1V1R-1V1R1V-1R-1V1R-1', 'R-1V1R1V-1R1V-1R-1V1',
    'R-1V1R1V-1R-1V1R-1V-1', 'R-1V1V1R-1V1R-1V1', 'R-1V1R1V-1R-1V1R-1V1R-1V-1', 'R-1V1V1V1',
    'R-1V1R-1V1R1V-1R-1V1R-1V-1', 'R1V-1R-1V1R-1V1R-1V1R-1V1', 'R-1V1R-1V1R1V-1R1V1',
    'R1V-1R-1V1R-1V1R-1V-1', 'R1V1R1V1R1', 'R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1R-1V-1',
    'R-1V1R-1V1R-1V1R1V-1R1', 'R1V1R-1V1R1V1', 'R-1V1R1V-1R-1V1R-1V1R-1V1', 'R1V-1R-1V1R-1V1R-1V1R1',
    'R-1V1R-1V1R1V-1R-1V1R-1V1R-1', 'R-1R-1V1R-1V1', 'R1V-1R-1V1R1V-1R-1V1', 'R-1R-1V-1',
    'R-1V1R-1V1R-1V1R-1V1R1V1', 'R-1V1R1V-1R1V-1R1V1',
))

CODE_MIN_COUNT = 10  # observations a context needs before its running baseline is used


# -- answer normalisation (strip_string) ------------------------------------------------------

def _fix_fracs(s: str) -> str:
    """``\\frac12`` → ``\\frac{1}{2}``, ``\\frac1{2}`` → ``\\frac{1}{2}``; a ``\\frac`` followed by
    fewer than two characters leaves the whole string unchanged."""
    head, *rest = s.split("\\frac")
    out = head
    for sub in rest:
        out += "\\frac"
        if sub[:1] == "{":
            out += sub
            continue
        if len(sub) < 2:
            return s
        a, b, tail = sub[0], sub[1], sub[2:]
        out += "{" + a + "}" + (b if b == "{" else "{" + b + "}") + tail
    return out


def _fix_a_slash_b(s: str) -> str:
    """``3/4`` → ``\\frac{3}{4}`` when both sides are plain integers (or contain ``sqrt``)."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    a: Any
    b: Any
    a, b = parts
    try:
        if "sqrt" not in a:
            a = int(a)
        if "sqrt" not in b:
            b = int(b)
    except ValueError:
        return s
    if s != f"{a}/{b}":
        return s
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _fix_command_arg(s: str, name: str) -> str:
    s = re.sub(rf"\\{name}(-?[0-9.a-zA-Z]+)", rf"\\{name}{{\1}}", s)
    return re.sub(rf"\\{name}\s+(\w+)$", rf"\\{name}{{\1}}", s)


def code_normalize(answer: Any) -> str:
    """The released ``strip_string``: units, ``$``, ``\\left``/``\\right``, degree signs, ``dfrac``
    and friends removed, ``a/b`` and ``\\frac12`` rewritten, trailing ``\\ , .`` dropped."""
    s = str(answer).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    if s.startswith("\\text{") and s.endswith("}"):
        s = s.split("{", 1)[1][:-1]
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("cfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    without_unit = re.sub(r"\\text{.*?}$", "", s).strip()
    if without_unit and without_unit != s:
        s = without_unit
    s = s.replace("^{\\circ}", "").strip().replace("^\\circ", "").strip()
    s = re.sub(r"\{(c|m)?m\}(\^(2|3))?", "", s).strip()
    s = re.sub(r"p\.m\.$", "", s).strip()
    s = re.sub(r"(\d)\s*t$", r"\1", s).strip()
    s = s.replace("\\$", "").replace("$", "").replace("x\\in", "")
    s = s.replace("\\%", "%").replace("\\%", "%")  # twice, as the code does (50\\\\% -> 50%)
    s = s.replace(" .", " 0.").replace("{.", "{0.").replace("\\cdot", "")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("\\mathbf", "").replace("\\mathrm", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    # (the code's quote removal discards its result, so quotes stay)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0+([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0+$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    s = _fix_command_arg(_fix_command_arg(s, "sqrt"), "tan").replace(" ", "")
    s = _fix_a_slash_b(_fix_fracs(s))
    # the code's regex (\\|,|\.)+$ on a newline-free string; rstrip avoids its quadratic backtracking
    return s.rstrip("\\,.")


# -- boxed answers (extract_and_process_boxed_answers) ----------------------------------------

_BRACE = re.compile(r"[{}]")


def code_boxed_contents(text: str) -> list[str]:
    """Every ``boxed{...}`` content (the backslash is not required); a ``%`` right after the closing
    brace is kept with the content; an unclosed ``boxed{`` gives nothing."""
    found = []
    for piece in text.split("boxed{")[1:]:
        depth = 0
        for m in _BRACE.finditer(piece):
            depth += 1 if m.group() == "{" else -1
            if depth < 0:
                i = m.start()
                found.append(piece[:i + 1] if piece[i + 1:i + 2] == "%" else piece[:i])
                break
    return found


def code_boxed_answer(text: str) -> str:
    """The last boxed content, first line, ``:`` ``.`` ``/`` trimmed, normalised, the part between
    the first and a second ``=``, ``\\frac{29}4`` → ``\\frac{29}{4}``; ``""`` when there is none."""
    found = code_boxed_contents(text)
    if not found:
        return ""
    a = found[-1].strip().split("\n")[0].lstrip(":").rstrip(".").rstrip("/")
    a = code_normalize(a)
    if "=" in a:
        a = a.split("=")[1].strip()
    return re.sub(r"\\frac{(\d+)}(\d+)", r"\\frac{\1}{\2}", a)


# -- comparison (answer_corrected_match, get_soft_answer_correction, get_rewards) -------------

class _NotComparable(Exception):
    """The expression is outside what :func:`code_eval` evaluates (it then compares unequal)."""


_MAX_INT_BITS = 1 << 20
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_, ast.BitXor: operator.xor,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg,
                                             ast.Invert: operator.invert, ast.Not: operator.not_}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_CALLS: dict[str, Callable[..., Any]] = {"abs": abs, "int": int, "float": float, "round": round, "min": min,
                                         "max": max, "pow": pow, "complex": complex, "bool": bool}


def _int_bits(x: Any) -> int:
    return abs(x).bit_length() if isinstance(x, int) else 0


def _bounded(op: type, a: Any, b: Any) -> Any:
    """Apply a binary operator, refusing integer results too large to compute quickly."""
    if op is ast.Mult and isinstance(a, (list, tuple, int)) and isinstance(b, (list, tuple, int)):
        count = a if isinstance(a, int) else b
        if not (isinstance(a, int) and isinstance(b, int)) and count > 1 << 16:
            raise _NotComparable("sequence repetition too large")
    if isinstance(a, int) and isinstance(b, int):
        if op is ast.Pow and b > 0 and abs(a) > 1 and b * _int_bits(a) > _MAX_INT_BITS:
            raise _NotComparable("integer power too large")
        if op is ast.LShift and b > _MAX_INT_BITS:
            raise _NotComparable("shift too large")
        if op is ast.Mult and _int_bits(a) + _int_bits(b) > 4 * _MAX_INT_BITS:
            raise _NotComparable("product too large")
    return _BINOPS[op](a, b)


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float, complex)):
            return node.value
        raise _NotComparable("not a number")
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_evaluate(e) for e in node.elts if not isinstance(e, ast.Starred)]
        if len(items) != len(node.elts):
            raise _NotComparable("starred item")
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
        return _evaluate(node.value)[_evaluate(node.slice)]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _bounded(type(node.op), _evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.BoolOp):
        value = None
        for v in node.values:
            value = _evaluate(v)
            if (isinstance(node.op, ast.And) and not value) or (isinstance(node.op, ast.Or) and value):
                return value
        return value
    if isinstance(node, ast.Compare) and all(type(o) in _COMPARE for o in node.ops):
        left = _evaluate(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = _evaluate(right_node)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _evaluate(node.body) if _evaluate(node.test) else _evaluate(node.orelse)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS
            and not node.keywords and not any(isinstance(a, ast.Starred) for a in node.args)):
        args = [_evaluate(a) for a in node.args]
        if node.func.id == "pow" and len(args) == 2:
            return _bounded(ast.Pow, *args)
        return _CALLS[node.func.id](*args)
    raise _NotComparable(type(node).__name__)


def code_eval(expression: str) -> Any:
    """What the code's ``eval(answer)`` returns, for numeric Python expressions only.

    Numbers, lists/tuples and indexing, arithmetic, comparisons, ``and``/``or``/``if``, and ``abs int
    float round min max pow complex bool`` on them are evaluated; anything else (names, strings, attribute access, other
    calls) and integer results above ~2^20 bits raise, which the comparison treats as "not equal".
    Never runs model text as code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(expression.lstrip(" \t"), mode="eval")
        return _evaluate(tree)
    except _NotComparable:
        raise
    except (SyntaxError, ValueError, TypeError, ArithmeticError, LookupError, RecursionError, MemoryError) as exc:
        raise _NotComparable(str(exc)) from None


def _fraction_matches(gold: str, out: str) -> bool:
    """The code's ``denominator / numerator == eval(answer)`` check on the first ``\\frac{a}{b}``."""
    found = re.findall(r"\\frac{(\d+)}{(\d+)}", gold)
    if not found:
        return False
    try:
        value = int(found[0][0]) / int(found[0][1])
        return bool(value == code_eval(out))
    except (_NotComparable, ArithmeticError, ValueError):
        return False


def code_corrected_match(gold: str, out: str) -> bool:
    """The released ``answer_corrected_match(gold, out)``: string rewrites of ``gold`` compared
    with ``out`` (spaces removed)."""
    g, o = gold.replace(" ", ""), out.replace(" ", "")
    if g == o:
        return True
    if "\\frac" in g and not g.endswith("}"):
        parts = g.split("}")  # \frac{a}b -> \frac{a}{b}: brace the text after the last "}"
        if "}".join(parts[:-1]) + "}{" + parts[-1] + "}" == o:
            return True
    if "\\frac" in g and _fraction_matches(g, o):
        return True
    if "_{" in g and g.replace("{", "").replace("}", "") == o:
        return True
    if "\\pm" in g and "\\pm" not in o:
        # the code writes f"{n}, {-n}" with n a string: a TypeError that makes the whole match False
        if any(n not in o for n in re.findall(r"\\pm(\d+)", g)):
            return False
    if "," in g:
        if g.replace(",", "") == o:
            return True
        if {a.strip() for a in g.split(",")} == {a.strip() for a in o.split(",")}:
            return True
    if "%" in g and g.replace("%", "") == o:
        return True
    m = re.match(r"\\text\{(.+?)\}", g)
    if m and m.group(1) == o:
        return True
    if ("\\left" in g or "\\right" in g) and g.replace("\\left", "").replace("\\right", "") == o:
        return True
    if "\\sqrt" in g and g.replace("{", "").replace("}", "") == o.replace("{", "").replace("}", ""):
        return True
    if "{,}" in g and g.replace("{,}", "") == o:
        return True
    if "dfrac" in g and g.replace("dfrac", "frac") == o:
        return True
    return "+" in g and set(g.split("+")) == set(o.split("+"))


def code_answers_match(gold: str, out: str) -> bool:
    """The released ``get_soft_answer_correction``: equal, or corrected match in either direction."""
    return gold == out or code_corrected_match(gold, out) or code_corrected_match(out, gold)


def code_gold_solution(solution: Any) -> str:
    """The gold solution as the code reads it; a bare answer (no ``boxed{``) is boxed first."""
    s = str(solution)
    return s if "boxed{" in s else "\\boxed{" + s + "}"


def code_attempt_reward(solution: Any, answer: Any, attempt: str) -> tuple[int, str, str]:
    """``(±1, gold answer, attempt answer)``: the released ``get_rewards(strict=True)`` for one row.

    ``solution`` is the gold solution (its last boxed answer is the gold), ``answer`` the dataset's
    answer string, compared as is."""
    gold = code_boxed_answer(code_gold_solution(solution))
    if "=" in gold:
        gold = gold.split("=")[1].strip()
    got = code_boxed_answer(attempt)
    if "=" in got:
        got = got.split("=")[1].strip()
    ok = code_answers_match(gold, got) or code_answers_match(str(answer), got)
    return (1 if ok else -1), gold, got


# -- verdicts (get_veri_answer) ---------------------------------------------------------------

_CODE_VERDICT = re.compile(r"Therefore, the answer is (.+?)\.")
_CODE_CORRECT_KEYWORDS = ("is correct", "is indeed", "verified to be correct", "verified as correct")


def code_verdict(text: str, *, is_last: bool) -> str:
    """``"correct"`` or ``"incorrect"``: the last verdict sentence whose word is exactly one of them,
    else the keywords (case-sensitive), else correct for the last piece and incorrect otherwise."""
    for word in reversed(_CODE_VERDICT.findall(text)):
        if word in ("correct", "incorrect"):
            return word
    if "is incorrect" in text or "cannot verify" in text:
        return "incorrect"
    if any(k in text for k in _CODE_CORRECT_KEYWORDS):
        return "correct"
    return "correct" if is_last else "incorrect"


# -- token-id pieces and per-segment rewards --------------------------------------------------

def _id_string(ids: Sequence[int]) -> str:
    return "_".join(str(int(t)) for t in ids)


def _piece_ids(piece: str) -> list[int]:
    return [int(t) for t in piece.strip("_").split("_") if t]


def code_pieces(ids: Sequence[int], eos_id: int, verify_ids: Sequence[int], retry_ids: Sequence[int], *,
                merge: bool) -> tuple[list[str], str, str]:
    """The released split: ``(pieces, verify string, retry string)``.

    The ids become one ``"_"``-joined string, cut at the first occurrence of the EOS id's digits, and
    split by a regex on the marker id strings (a substring match: it can cut inside a token id, which
    the reconstruction check then flags). ``merge=True`` (process level) glues a marker onto the
    current piece when the previous marker was the same one, and drops an empty last piece."""
    joined = _id_string(ids).split(str(int(eos_id)))[0].strip("_")
    v, r = _id_string(verify_ids), _id_string(retry_ids)
    pieces = re.split(f"({v}|{r})", joined)
    if not merge:
        return pieces, v, r
    merged: list[str] = []
    last: str | None = None
    current = ""
    for p in pieces:
        if p in (v, r):
            if p == last:
                current += p
            else:
                merged += [current, p]
                current, last = "", p
        else:
            current += p
    if current:
        merged.append(current)
    return merged, v, r


@dataclass
class CodeSegment:
    """One piece of a completion as the released code scores it.

    ``kind``: ``"solve"``, ``"verify"`` or ``"marker"`` (the zero-reward part); ``reward``: the raw ±1
    that goes into the reward contexts and the baseline table; ``weight``: the code's ×2 bonus;
    ``penalised``: the last piece of a truncated completion, whose tokens get a flat −1 instead."""

    kind: str
    tokens: list[int]
    reward: int = 0
    weight: float = 1.0
    context: str = ""
    penalised: bool = False
    answer: str | None = None
    verdict: str | None = None

    def value(self, baseline: float) -> float:
        if self.kind == "marker":
            return 0.0
        if self.penalised:
            return -1.0
        return self.weight * (self.reward - baseline)


@dataclass
class CodeRollout:
    """A completion scored the released way: segments in order, the reconstruction check, and
    the last attempt's raw reward (the outcome-level reward)."""

    segments: list[CodeSegment]
    valid: bool
    last_reward: int
    truncated: bool = False
    gold: str = ""
    attempt_rewards: list[int] = field(default_factory=list)

    @property
    def actions(self) -> list[CodeSegment]:
        return [s for s in self.segments if s.kind != "marker"]

    @property
    def contexts(self) -> list[str]:
        return [s.context for s in self.actions]

    @property
    def rewards(self) -> list[int]:
        return [s.reward for s in self.actions]

    def pairs(self) -> list[tuple[str, int]]:
        """(reward context, raw reward) of every action: what the running baseline table adds."""
        return [(s.context, s.reward) for s in self.actions]

    def token_values(self, baseline: Callable[[str], float]) -> list[float]:
        """Per-token reward of the reconstructed tokens: ``weight·(R − b(context))``, −1 on the
        penalised piece, 0 on markers (the code's ``token_rewards`` after the prompt)."""
        out: list[float] = []
        for s in self.segments:
            out += [s.value(0.0 if s.kind == "marker" or s.penalised else baseline(s.context))] * len(s.tokens)
        return out


def code_rollout(ids: Sequence[int], *, truncated: bool, solution: Any, answer: Any,
                 decode: Callable[[list[int]], str], eos_id: int, verify_ids: Sequence[int],
                 retry_ids: Sequence[int], merge: bool = True, bonus: bool = True,
                 veri_bonus: bool = True) -> CodeRollout | None:
    """Score one completion as the released trainer loop does; None where the code fails (an empty
    completion at process level, ``merge=True``: the code indexes an empty piece list).

    ``ids`` are the completion ids (an EOS and anything after it are cut off), ``truncated`` is the
    code's no-EOS flag, ``decode`` turns a token list into text (the code's ``tokenizer.decode``).
    ``merge=True`` is the process-level loop, ``merge=False`` the outcome-level one."""
    ids = [int(t) for t in ids]
    pieces, v, r = code_pieces(ids, eos_id, verify_ids, retry_ids, merge=merge)
    if not pieces:
        return None
    first = _piece_ids(pieces[0])
    reward, gold, got = code_attempt_reward(solution, answer, decode(first))
    segments = [CodeSegment("solve", first, reward, 1.0, "", False, answer=got)]
    rebuilt = ids[:len(first)]
    prefix = f"R{reward}"
    last_reward = reward
    attempt_rewards = [reward]
    marker: str | None = None
    rest = pieces[1:]
    for i, piece in enumerate(rest):
        if piece in (v, r):
            marker = piece
            continue
        if marker is None:  # unreachable: a piece after the first always follows a marker
            continue
        tokens = _piece_ids(piece)
        text = decode(tokens)
        penalised = truncated and i == len(rest) - 1
        marker_tokens = _piece_ids(marker)
        if marker == v:
            verdict = code_verdict(text, is_last=i == len(rest) - 1)
            ok = (last_reward > 0 and verdict == "correct") or (last_reward < 0 and verdict == "incorrect")
            value = 1 if ok else -1
            weight = 2.0 if veri_bonus and last_reward > 0 else 1.0
            seg = CodeSegment("verify", tokens, value, weight, prefix, penalised, verdict=verdict)
            prefix += f"V{value}"
        else:
            value, _, got = code_attempt_reward(solution, answer, text)
            weight = 2.0 if bonus and value != last_reward else 1.0
            seg = CodeSegment("solve", tokens, value, weight, prefix, penalised, answer=got)
            prefix += f"R{value}"
            last_reward = value
            attempt_rewards.append(value)
        segments += [CodeSegment("marker", marker_tokens), seg]
        rebuilt += marker_tokens + tokens
    valid = rebuilt == ids[:len(rebuilt)]
    return CodeRollout(segments, valid, last_reward, truncated, gold, attempt_rewards)
