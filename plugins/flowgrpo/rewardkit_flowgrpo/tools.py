"""A small tool registry for the agent loop: a safe calculator and a lookup over local documents.

Every tool call runs under a timeout. A tool that raises or runs past its timeout produces a
:class:`ToolResult` with ``ok=False`` and an ``error`` string; the agent loop decides what that
means for the trajectory (by default it ends it, and the outcome reward gives it 0 and counts it).

Timeouts use a daemon thread per call: Python cannot kill a thread, so a tool that hangs forever
is abandoned (it keeps its thread until it returns or the process exits) and the rollout goes on.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ToolTimeout(TimeoutError):
    """A tool call ran longer than its timeout."""


@dataclass
class ToolResult:
    tool: str
    command: str
    output: str = ""
    ok: bool = True
    error: str | None = None
    timed_out: bool = False


@dataclass
class Tool:
    """A named tool: ``fn(command: str) -> str`` plus a one-line description shown to the planner."""

    name: str
    fn: Callable[[str], Any]
    description: str = ""
    timeout: float | None = None  # None: the registry's default

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"tool name {self.name!r} must be an identifier (the planner names it in text)")


def run_with_timeout(fn: Callable[[], Any], timeout: float | None) -> Any:
    """Run ``fn()`` in a daemon thread; raise :class:`ToolTimeout` after ``timeout`` seconds."""
    if timeout is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="flowgrpo-tool", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ToolTimeout(f"tool call did not return within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class ToolRegistry:
    """Named tools with a default timeout (AgentFlow uses 500 s; the toy task uses a few seconds)."""

    def __init__(self, tools: Iterable[Tool] = (), *, timeout: float | None = 10.0) -> None:
        self.timeout = timeout
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, tool: Tool) -> Tool:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def register(self, name: str, description: str = "", timeout: float | None = None):
        """Decorator: ``@registry.register("search", "web search")``."""
        def deco(fn: Callable[[str], Any]) -> Callable[[str], Any]:
            self.add(Tool(name, fn, description, timeout))
            return fn
        return deco

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def describe(self) -> str:
        return "\n".join(f"- {t.name}: {t.description}" for t in self._tools.values())

    def call(self, name: str, command: str) -> ToolResult:
        """Run tool ``name`` on ``command``; never raises for tool failures (see :class:`ToolResult`)."""
        if name not in self._tools:
            return ToolResult(name, command, ok=False, error=f"tool {name!r} not found")
        tool = self._tools[name]
        timeout = tool.timeout if tool.timeout is not None else self.timeout
        try:
            out = run_with_timeout(lambda: tool.fn(command), timeout)
        except ToolTimeout as exc:
            return ToolResult(name, command, ok=False, error=str(exc), timed_out=True)
        except Exception as exc:
            return ToolResult(name, command, ok=False, error=f"{type(exc).__name__}: {exc}")
        return ToolResult(name, command, output="" if out is None else str(out))

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()


# -- calculator ------------------------------------------------------------------------------
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNOPS: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _format_number(x: float | int) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    if isinstance(x, float):
        return repr(round(x, 10))
    return str(x)


def calculator(expression: str, *, max_exponent: int = 64, max_chars: int = 200) -> str:
    """Evaluate an arithmetic expression (numbers, + - * / // % **, parentheses) without ``eval``.

    Raises ``ValueError`` on anything else (names, calls, huge exponents, division by zero).
    """
    expr = expression.strip().replace("×", "*").replace("^", "**")
    if not expr:
        raise ValueError("empty expression")
    if len(expr) > max_chars:
        raise ValueError(f"expression longer than {max_chars} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc

    def ev(node: ast.AST) -> float | int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > max_exponent:
                raise ValueError(f"exponent {right} too large")
            try:
                return _BINOPS[type(node.op)](left, right)
            except ZeroDivisionError as exc:
                raise ValueError("division by zero") from exc
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](ev(node.operand))
        raise ValueError(f"unsupported element {type(node).__name__} in {expression!r}")

    value = ev(tree)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{expression!r} is not finite")
    return _format_number(value)


# -- document lookup -------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _stem(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


@dataclass
class DocumentStore:
    """An offline lookup over a local document set: best title match, else best word overlap.

    ``docs`` are ``{"title": ..., "text": ...}`` records. ``lookup(query)`` returns the text of the
    best document, or raises ``LookupError`` when no document shares a word with the query.
    """

    docs: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for d in self.docs:
            if "title" not in d or "text" not in d:
                raise ValueError(f"a document needs 'title' and 'text'; got keys {sorted(d)}")
        self._index = [({_stem(w) for w in _words(d["title"])}, {_stem(w) for w in _words(d["text"])}) for d in self.docs]

    @classmethod
    def from_jsonl(cls, path: str | Path) -> DocumentStore:
        with open(path, encoding="utf-8") as fh:
            return cls([json.loads(line) for line in fh if line.strip()])

    def lookup(self, query: str) -> str:
        q = {_stem(w) for w in _words(query)}
        if not q:
            raise LookupError("empty lookup query")
        best, best_key = None, (0, 0)
        for doc, (title, body) in zip(self.docs, self._index):
            key = (len(q & title), len(q & body))
            if key > best_key:
                best, best_key = doc, key
        if best is None:
            raise LookupError(f"no document matches {query!r}")
        return best["text"]
