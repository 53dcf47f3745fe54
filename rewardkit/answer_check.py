"""Reading gold and predicted math answers, and checking them with math-verify in worker processes.

Two jobs live here, both for ``math.accuracy``:

* **Reading answers** (plain string work, in the calling process). Datasets write gold answers in
  many forms: MATH/NuminaMath bare LaTeX without ``$`` (``\\dfrac{3}{4}``, ``2\\sqrt3``,
  ``\\text{(C)}``, ``\\$18.90``, ``1,\\!000``), GSM8K solutions ending ``#### 18``, full solutions
  with a ``\\boxed{}``, ``$...$``-wrapped answers, CHAMP's ASCII answers (``2^(n-1)``,
  ``C(10, 5), or equivalently 252``, ``98 values``, ``No``). :func:`read_gold` turns any of them
  into a :class:`Gold`: a choice letter, a short text answer, or LaTeX forms that math-verify
  reads as the math they denote (bare LaTeX is parsed inside ``\\boxed{}``, never as free text:
  free-text parsing reads ``2\\sqrt3`` as ``2``).
* **Checking** (sympy work, in a pool of worker processes). math-verify's own timeouts use
  ``signal.alarm``, which works on the main thread only and cannot interrupt C code that holds
  the GIL (``10^{10^{10}}`` spends minutes in one big-int power). :class:`CheckerPool` runs the
  checks in worker processes with a deadline per answer; a worker past its deadline is killed
  and replaced, and that answer's outcome is :data:`TIMEOUT`. Inside the workers math-verify's
  timeouts are off (they return a silent ``False``, a wrong 0.0); the pool's deadline is the
  only one.

The worker processes come from :mod:`rewardkit.workers` (fresh interpreters, not forks: they never
re-run the user's ``__main__``). This module imports nothing else from rewardkit, so the workers
load it by path without importing the package.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any

from rewardkit.workers import (
    Handler,
    Reply,
    WorkerDied,
    WorkerError,
    WorkerProcess,
    wait_any,
)
from rewardkit.workers import WorkerStartError as WorkerStartError  # raised by the pool: public here too

BOXED = "\\boxed{"

# -- reading answers ---------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}``, or None when there is none."""
    start = text.rfind(BOXED)
    while start >= 0:
        depth, i = 1, start + len(BOXED)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start + len(BOXED): i - 1]
        start = text.rfind(BOXED, 0, start)
    return None


def final_answer(text: str) -> str | None:
    """The final answer a solution states: its last ``\\boxed{}``, else what follows its last
    ``####`` (GSM8K), else None."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip()
        return tail.splitlines()[0] if tail else None
    return None


@dataclass(frozen=True)
class Gold:
    """A gold answer as it will be compared.

    ``kind`` is ``"choice"`` (``forms[0]`` is the letter, ``forms[1:]`` the option's value when the
    gold states it), ``"text"`` (``forms[0]`` is the
    normalised words) or ``"math"`` (``forms`` are strings for math-verify's ``parse``: bare
    answers already wrapped in ``\\boxed{}``; a correct prediction may equal any of them).
    ``prose`` marks one math form that is free text with ``$...$`` math for math-verify to search.
    """

    kind: str
    forms: tuple[str, ...]
    prose: bool = False


# characters LaTeX parsers do not read, written as the LaTeX they mean
_UNICODE = {"\u2212": "-", "\u00b0": "^\\circ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u00d7": "\\times ",
            "\u00f7": "\\div ", "\u2264": "\\le ", "\u2265": "\\ge ", "\u221a": "\\sqrt", "\u00b7": "\\cdot "}
# a thin space used as thousands separator ("1\,234"): latex2sympy reads it as "1 + 234"
_THIN_THOUSANDS = re.compile(r"(?<=\d)\\[,;: ](?=\d{3}(?!\d))")
_MONEY = re.compile(r"(?<!\\)\$(?=\s*\d)")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_CHOICE = re.compile(r"^\(?\s*([A-Z])\s*\)?$")
_CHOICE_WITH_VALUE = re.compile(r"^\(([A-Z])\)\s*(\S.*)$")
# "C", "(C) 12", "C: 12"; a lower-case letter only alone ("(c)"), since "c = 5" names a variable
_CHOICE_LOOSE = re.compile(r"^\(?\s*([A-Z])\s*(?:\)|\.|:|$|\s)|^\(?\s*([a-z])\s*\)?\.?$")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z'\- ]*$")
_NUMBER_THEN_WORDS = re.compile(r"^([+-]?\d[\d,]*(?:\.\d+)?)\s+([A-Za-z][A-Za-z'\-., ]*)$")
# words that are math, not prose, when they follow a number or stand alone
_MATH_WORDS = {"pi", "e", "i", "sqrt", "infty", "inf", "infinity", "sin", "cos", "tan", "log", "ln", "exp",
               "mod", "floor", "ceil", "max", "min", "gcd", "lcm", "choose"}
# "X, or equivalently Y": any listed form is right (CHAMP); "X, or approximately Y": only X is exact
_EQUIVALENT = re.compile(r",?\s+or\s+(?:equivalently|an equivalent form such as)\s+", re.IGNORECASE)
_APPROXIMATELY = re.compile(r",?\s+or\s+approximately\s+.*$", re.IGNORECASE | re.DOTALL)
_PROSE_REMARK = re.compile(r"\s*\(([^()]*)\)\s*$")
_ANCHOR = re.compile(r"answer\s*(?:is|:)\s*[:*\s]*(.+)", re.IGNORECASE)


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _unwrap_math(text: str) -> str | None:
    """The inside of a string that is one ``$...$``, ``$$...$$``, ``\\(...\\)`` or ``\\[...\\]``."""
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            inner = text[len(left):-len(right)]
            if left != "$" or "$" not in inner.replace("\\$", ""):
                return inner.strip()
    return None


def _has_math_delimiters(text: str) -> bool:
    return "\\(" in text or "\\[" in text or len(re.findall(r"(?<!\\)\$", text)) >= 2


def _clean(s: str) -> str:
    """Spelling fixes every bare answer gets, gold or predicted: unicode math, thin-space thousands
    separators, an unescaped money sign, a trailing full stop."""
    for k, v in _UNICODE.items():
        s = s.replace(k, v)
    s = _THIN_THOUSANDS.sub("", s)
    s = _MONEY.sub(r"\\$", s)
    return s.strip().rstrip(".").strip()


def _plain_text(s: str) -> str:
    """``s`` without text commands and math-mode spacing, lower case, single spaces."""
    s = _TEXT_CMD.sub(r"\1", s).replace("\\ ", " ").replace("~", " ")
    return " ".join(s.replace("*", " ").split()).strip(" .!").lower()


def _is_words(s: str) -> bool:
    """A short text answer ("No", "odd", "Evelyn"), not a product of variables like ``n`` or ``ab``."""
    if not _WORDS.match(s):
        return False
    words = s.lower().replace("-", " ").split()
    if any(w in _MATH_WORDS for w in words):
        return False
    return len(words) > 1 or len(words[0]) >= 3 or words[0] in ("no", "yes")


def _is_prose(s: str) -> bool:
    """Three or more words of three or more letters outside LaTeX commands and ``\\text{}``."""
    bare = _TEXT_CMD.sub(" ", s)
    bare = re.sub(r"\\[A-Za-z]+", " ", bare)
    words = re.findall(r"(?<![A-Za-z])[A-Za-z]{3,}(?![A-Za-z])", bare)
    return sum(w.lower() not in _MATH_WORDS for w in words) >= 3


def _drop_prose(s: str) -> str:
    """``"98 values"`` -> ``"98"``, ``"0 is the only possible value"`` -> ``"0"``,
    ``"100 (i.e., all values)"`` -> ``"100"``: a number followed by words reads as the number."""
    remark = _PROSE_REMARK.search(s)
    if remark and s[:remark.start()].strip() and re.search(r"[A-Za-z]{3,}\s", remark.group(1) + " ") \
            and not re.search(r"[=^\\/*+]", remark.group(1)):
        s = s[:remark.start()].strip()
    m = _NUMBER_THEN_WORDS.match(s)
    if m and not any(w.strip(".,") in _MATH_WORDS for w in m.group(2).lower().split()):
        return m.group(1)
    return s


def math_form(answer: str) -> str:
    """A bare answer (gold or predicted) as a string math-verify parses as the math it denotes:
    the cleaned LaTeX inside ``\\boxed{}`` (or ``$...$`` when its braces do not balance)."""
    s = _drop_prose(_clean(answer))
    return f"\\boxed{{{s}}}" if _balanced(s) else f"${s}$"


def read_bare(answer: str) -> Gold | None:
    """A bare gold answer (no surrounding prose) as a :class:`Gold`."""
    s = _clean(answer)
    if not s:
        return None
    plain = _TEXT_CMD.sub(r"\1", s).strip()
    choice = _CHOICE.match(plain)
    if choice:
        return Gold("choice", (choice.group(1),))
    with_value = _CHOICE_WITH_VALUE.match(plain)
    if with_value:  # "\\textbf{(B) }5" (AMC): the letter, or the option's value
        return Gold("choice", (with_value.group(1), math_form(with_value.group(2))))
    if _is_words(plain):
        return Gold("text", (_plain_text(plain),))
    s = _APPROXIMATELY.sub("", s)
    parts = [part for part in _EQUIVALENT.split(s) if part.strip()]
    if any(_is_prose(_drop_prose(part)) for part in parts):
        # a sentence around the answer ("The limit exists and is equal to 3"): as LaTeX it is a
        # product of letters; math-verify's text search finds the stated answer
        return Gold("math", (answer.strip(),), prose=True)
    forms = tuple(math_form(part) for part in parts)
    return Gold("math", forms) if forms else None


def read_gold(gold: Any) -> Gold | None:
    """The gold answer of a dataset row, or None when there is none (missing, blank, NaN)."""
    if gold is None or isinstance(gold, bool):
        return None
    if isinstance(gold, float):
        if gold != gold:  # NaN: a missing value in a pandas/arrow column
            return None
        text = repr(gold)
    else:
        text = str(gold).strip()
    if not text:
        return None
    final = final_answer(text)
    if final is not None:
        return read_bare(final)
    inner = _unwrap_math(text)
    if inner is not None:
        return read_bare(inner)
    if _has_math_delimiters(text):
        return Gold("math", (text,), prose=True)
    return read_bare(text)


def _anchored(text: str) -> str | None:
    """What follows the last "answer is" / "answer:" on its line, for completions without a box."""
    matches = _ANCHOR.findall(text)
    if not matches:
        return None
    return matches[-1].splitlines()[0].strip().strip("*$ ").rstrip(".")


def choice_letter(answer: str) -> str | None:
    """The option letter an answer names: ``C``, ``(C)``, ``\\text{(C)}``, ``C) 12``, ``(c)``."""
    plain = _TEXT_CMD.sub(r"\1", answer).replace("$", "").strip()
    m = _CHOICE_LOOSE.match(plain)
    return (m.group(1) or m.group(2)).upper() if m else None


@dataclass(frozen=True)
class Job:
    """One math check for a worker: gold forms and the prediction, both ready for ``parse``."""

    gold: tuple[str, ...]
    gold_prose: bool
    answer: str
    answer_boxed: bool  # the prediction is one bare answer in \\boxed{}, not a whole text


def prepare(gold: Gold, text: str) -> Job | float:
    """Compare ``text``'s final answer with ``gold`` now when it takes no math (choice letters,
    text answers), else return the :class:`Job` a worker checks."""
    final = final_answer(text)
    if gold.kind == "choice":
        said = final if final is not None else _anchored(text)
        letter = None if said is None else choice_letter(said)
        if letter is None and said is not None and len(gold.forms) > 1:
            return Job(gold.forms[1:], False, math_form(said), True)  # the option's value, no letter
        return float(letter is not None and letter == gold.forms[0])
    if gold.kind == "text":
        said = final if final is not None else _anchored(text)
        return float(said is not None and _plain_text(_clean(said)) == gold.forms[0])
    if final is not None:
        return Job(gold.forms, gold.prose, math_form(final), True)
    return Job(gold.forms, gold.prose, text, False)


# -- checking, in this process -----------------------------------------------------------------

_configs: dict[str, Any] = {}


def _extraction_configs() -> dict[str, Any]:
    if not _configs:
        import logging

        from math_verify import ExprExtractionConfig, LatexExtractionConfig

        # timeouts are off on purpose (the caller's deadline holds): silence the warning that says so
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        # default normalisation: it already drops \\text{ cm}-style units, and units=True misreads
        # "2\\sqrt3" (no braces) as a string
        _configs.update(
            # a bare answer is one boxed LaTeX expression: no free-text number search, which reads
            # "2\\sqrt3" as 2 or "2^floor(n/2)" as 2
            boxed=[LatexExtractionConfig(boxed_match_priority=0)],
            prose=[LatexExtractionConfig(), ExprExtractionConfig()],
            text=[LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False),
                  ExprExtractionConfig()])
    return _configs


def check_here(job: Job) -> float | None:
    """Check one job in this thread, without any time limit: 1.0 / 0.0, or None when the gold
    answer does not parse. Workers run this; call it directly only on trusted inputs."""
    from math_verify import parse, verify

    configs = _extraction_configs()
    gold: list[Any] = []
    for form in job.gold:
        gold += parse(form, extraction_config=configs["prose" if job.gold_prose else "boxed"], parsing_timeout=None)
    if not gold:
        return None
    answer = parse(job.answer, extraction_config=configs["boxed" if job.answer_boxed else "text"],
                   extraction_mode="first_match", parsing_timeout=None)
    if not answer:
        return 0.0
    return float(verify(gold, answer, timeout_seconds=None))


# -- checking, in worker processes -------------------------------------------------------------


class _Timeout:
    def __repr__(self) -> str:
        return "TIMEOUT"


TIMEOUT: Any = _Timeout()  # the outcome of a check that ran past its deadline


class CheckFailed(RuntimeError):
    """A check raised inside its worker, or the worker died; the message says which."""


# how long a fresh worker may take to import math-verify before the pool gives up on it
START_TIMEOUT = 120.0


class _Worker(WorkerProcess):
    """A checking worker process (this file, loaded by path), with the jobs the pool has sent it."""

    def __init__(self) -> None:
        super().__init__(os.path.abspath(__file__), "_setup_worker", name="a math-verify worker",
                         tag="rewardkit_answer_worker")
        self.queue: deque[int] = deque()  # indices of the jobs sent, in the order it runs them
        self.since = 0.0  # when its current job started
        self.acked = False  # it has taken the chunk in its queue


def _setup_worker(_: None) -> Handler:
    """In a worker process: load math-verify, then check each chunk of jobs sent."""
    _extraction_configs()
    return _check_chunk


def _check_chunk(chunk: list[tuple[int, tuple[Any, ...]]], reply: Reply) -> None:
    reply("ack")  # the parent now knows a death from here on is this chunk's doing
    for index, fields in chunk:
        try:
            outcome = (index, True, check_here(Job(*fields)))
        except Exception as exc:  # report, keep serving
            outcome = (index, False, f"{type(exc).__name__}: {exc}")
        reply(outcome)


class CheckerPool:
    """Worker processes that run :func:`check_here` with a deadline per job.

    Workers start on first use (fresh interpreters: safe next to CUDA and torch threads, and they
    never re-run the caller's script). Several threads may share one pool: a call takes the idle
    workers it needs and hands them back. Use :func:`shared_pool` rather than building your own.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a checker pool needs at least one worker, got {workers}")
        self.size = workers
        self.pid = os.getpid()
        self._idle: list[_Worker] = []
        self._count = 0
        self._cond = threading.Condition()
        self.restarts = 0

    def _take(self, want: int) -> list[_Worker]:
        with self._cond:
            while not self._idle and self._count >= self.size:
                self._cond.wait()
            for w in list(self._idle):
                try:
                    w.poll_ready()  # a replacement that has started since, or died
                except WorkerError:  # it died before it was ready: a new one takes its place
                    self._idle.remove(w)
                    self._count -= 1
                    self.restarts += 1
            self._idle.sort(key=lambda w: not w.ready)
            taken = self._idle[:want]
            del self._idle[:want]
            while len(taken) < want and self._count < self.size:
                self._count += 1
                try:
                    taken.append(_Worker())
                except BaseException:
                    self._count -= 1
                    self._give(taken)
                    raise
            return taken

    def _give(self, workers: list[_Worker]) -> None:
        with self._cond:
            self._idle.extend(workers)
            self._cond.notify_all()

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self.restarts += 1
        return _Worker()

    def run(self, jobs: Sequence[Job], timeout: float) -> list[Any]:
        """Outcome of every job, in order: 1.0 / 0.0, None (gold does not parse), :data:`TIMEOUT`
        (ran past ``timeout`` seconds; its worker was replaced), or a :class:`CheckFailed`."""
        n = len(jobs)
        if n == 0:
            return []
        chunk = max(1, min(16, n // (self.size * 4)))
        workers = self._take(min(self.size, -(-n // chunk)))
        pending: deque[int] = deque(range(n))
        out: list[Any] = [None] * n
        try:
            self._drive(workers, jobs, pending, out, chunk, timeout)
        except BaseException:
            for w in workers:  # its state is unknown: never hand a half-used worker to another call
                w.kill()
            with self._cond:
                self._count -= len(workers)
                self._cond.notify_all()
            raise
        self._give(workers)
        return out

    def _drive(self, workers: list[_Worker], jobs: Sequence[Job], pending: deque[int], out: list[Any],
               chunk: int, timeout: float) -> None:
        def requeue(w: _Worker) -> None:
            pending.extendleft(reversed(w.queue))
            w.queue.clear()

        def feed(k: int) -> None:
            w = workers[k]
            if w.ready and not w.queue and pending:
                sent = [pending.popleft() for _ in range(min(chunk, len(pending)))]
                w.queue.extend(sent)
                w.acked = False
                w.since = time.monotonic()
                try:
                    # plain tuples: the worker loads this file by path, not as rewardkit.answer_check
                    w.send([(i, astuple(jobs[i])) for i in sent])
                except WorkerDied:  # it died while idle (killed from outside): nothing of this call lost
                    requeue(w)
                    workers[k] = self._replace(w)

        for k in range(len(workers)):
            feed(k)
        while pending or any(w.queue for w in workers):
            now = time.monotonic()
            limits = [(w.since + timeout) if w.ready else (w.started + START_TIMEOUT)
                      for w in workers if w.queue or not w.ready]
            readable = wait_any(workers, timeout=max(0.0, min(limits, default=now + 1) - now))
            now = time.monotonic()
            for k, w in enumerate(workers):
                if w in readable:
                    try:
                        for msg in w.messages():  # WorkerStartError when it failed on its own: raised
                            if msg == "ack":
                                w.acked = True
                            else:
                                index, ok, value = msg
                                out[index] = value if ok else CheckFailed(value)
                                w.queue.popleft()
                                w.since = time.monotonic()
                    except WorkerDied as exc:
                        # it died (out of memory, a crash in C, killed): the job it was running failed;
                        # a worker that died before it took its chunk (killed while idle) failed none
                        if w.acked and w.queue:
                            index = w.queue.popleft()
                            out[index] = CheckFailed(f"checking worker died (exit code {exc.exit_code})")
                        requeue(w)
                        workers[k] = self._replace(w)
                    feed(k)
                elif w.ready and w.queue and now >= w.since + timeout:
                    out[w.queue.popleft()] = TIMEOUT
                    requeue(w)
                    workers[k] = self._replace(w)
                elif not w.ready:
                    w.check_start_deadline(START_TIMEOUT)

    def close(self) -> None:
        """Stop the idle workers (at exit; busy ones stop when their call ends and the process exits)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        if os.getpid() == self.pid:  # a forked child must not touch its parent's workers
            for w in idle:
                w.stop()


_pools: dict[tuple[int, int], CheckerPool] = {}
_pools_lock = threading.Lock()


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def shared_pool(workers: int | None = None) -> CheckerPool:
    """The process-wide pool of ``workers`` workers (default: up to 4, one per CPU). A forked child
    gets its own pool: the parent's pipes are not its to use."""
    size = workers or default_workers()
    key = (os.getpid(), size)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = CheckerPool(size)
        return pool


@atexit.register
def _close_pools() -> None:
    for (pid, _), pool in list(_pools.items()):
        if pid == os.getpid():
            pool.close()


def check_jobs(jobs: Sequence[Job], *, timeout: float, workers: int | None = None) -> list[Any]:
    """:meth:`CheckerPool.run` on the shared pool, each distinct job checked once (a GRPO group
    repeats the same few final answers)."""
    distinct: dict[Job, int] = {}
    order = [distinct.setdefault(job, len(distinct)) for job in jobs]
    outcomes = shared_pool(workers).run(list(distinct), timeout) if distinct else []
    return [outcomes[k] for k in order]
