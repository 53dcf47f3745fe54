"""Score a data file with composed rewards: the engine of ``rewardkit score``.

What it guarantees:

* columns are read per row: a row that lacks a column is scored without it (rows are grouped by
  the columns they have), so a reward that needs it fails on that row only, whatever the order;
* an exception is an *error*, kept apart from ``None`` (*does not apply*): each output row has an
  ``errors`` field (reward name -> message) and the summary counts both. Under ``on_error="raise"``
  the first error stops the run with a message naming the reward, the rows and the cause;
* the output is written incrementally to ``<output>.partial`` and renamed over ``<output>`` only when
  every row is scored: a killed run leaves the old output untouched, and ``resume=True`` continues
  the partial file (rows identified by ``id_column`` or by row number), no row lost or duplicated.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

PARTIAL_SUFFIX = ".partial"
META_SUFFIX = ".partial.json"
META_FORMAT = "rewardkit-score-partial"
TOTAL = "total"


class ScoreError(Exception):
    """A problem the user must fix (bad input, an error under on_error="raise"); the message says what."""


@dataclass
class ScoreOptions:
    data: str
    spec: dict[str, Any]
    output: str | None = None
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    id_column: str | None = None
    batch_size: int = 64
    on_error: str = "raise"
    resume: bool = False
    other_inputs: tuple[str, ...] = ()  # files the output must not overwrite (the spec)


@dataclass
class Summary:
    """Per reward (and ``total``): the values, the rows where it did not apply, the rows with errors."""

    names: list[str]
    weights: dict[str, float]
    values: dict[str, list[float]] = field(default_factory=dict)
    nones: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    first_error: str | None = None

    def __post_init__(self) -> None:
        for n in [*self.names, TOTAL]:
            self.values.setdefault(n, [])
            self.nones.setdefault(n, 0)
            self.errors.setdefault(n, 0)

    def add(self, record: dict[str, Any]) -> None:
        self.rows += 1
        errors = record.get("errors") or {}
        for n in [*self.names, TOTAL]:
            v = record.get(n)
            if v is not None:
                self.values[n].append(v)
            elif n in errors or (n == TOTAL and errors):
                self.errors[n] += 1
            else:
                self.nones[n] += 1
        if errors and self.first_error is None:
            name, message = next(iter(errors.items()))
            self.first_error = f"row {record.get('index')}{_id_text(record)}, {name}: {message}"


def _id_text(record: dict[str, Any]) -> str:
    return f" (id {record['id']!r})" if "id" in record else ""


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 500 else first[:497] + "..."


def _rows_text(rows: list[int], ids: list[Any] | None) -> str:
    shown = [f"{i}" + (f" (id {ids[i]!r})" if ids is not None else "") for i in rows[:10]]
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return f"row{'s' if len(rows) > 1 else ''} {', '.join(shown)}{more}"


# -- scoring ----------------------------------------------------------------------------------------

def _completion_problem(row: Any, column: str) -> str | None:
    """Why a row cannot be scored at all, or None."""
    from rewardkit.reward import completion_text

    if not isinstance(row, dict):
        return f"the row is a {type(row).__name__}, not an object"
    if column not in row:
        return f"missing column {column!r}"
    value = row[column]
    if value is None:
        return f"column {column!r} is null"
    try:
        completion_text(value)
    except (TypeError, AttributeError) as exc:
        return f"column {column!r}: {exc}"
    return None


def _swallowed(reward: Any) -> int:
    # a reward that keeps its own on_error="none" inside (a composite, a remote retry) only counts
    counters = getattr(reward, "counters", None) or {}
    return max(counters.get("errors", 0), counters.get("timeouts", 0))


Call = Callable[[Any, list[int]], list[Any]]


def score_rows(reward: Any, call: Call, rows: list[int]) -> tuple[dict[int, Any], dict[int, str]]:
    """``reward``'s value on every row and the error of the rows where it raised.

    ``call(reward, rows)`` scores rows as one batch. When the batch raises, each row is tried alone
    to find the failing ones; the others are scored again as one batch."""
    before = _swallowed(reward)
    try:
        values = call(reward, rows)
    except Exception as exc:
        if len(rows) == 1:
            return {rows[0]: None}, {rows[0]: _message(exc)}
        bad: dict[int, str] = {}
        for i in rows:
            try:
                call(reward, [i])
            except Exception as row_exc:
                bad[i] = _message(row_exc)
        if not bad:  # only the batch as a whole fails
            return dict.fromkeys(rows), dict.fromkeys(rows, _message(exc))
        good = [i for i in rows if i not in bad]
        out, errors = score_rows(reward, call, good) if good else ({}, {})
        out.update(dict.fromkeys(bad))
        errors.update(bad)
        return out, errors
    out = dict(zip(rows, values))
    swallowed = _swallowed(reward) - before
    if not swallowed:
        return out, {}
    nones = [i for i in rows if out[i] is None]
    if swallowed >= len(nones):
        return out, dict.fromkeys(nones, "error counted by the reward (its own on_error='none')")
    errors = {}
    for i in nones:  # some None rows are errors, some do not apply: find which
        mark = _swallowed(reward)
        call(reward, [i])
        if _swallowed(reward) > mark:
            errors[i] = "error counted by the reward (its own on_error='none')"
    return out, errors


class _Scorer:
    def __init__(self, rewards: Any, policies: dict[str, str], opts: ScoreOptions, rows: list[Any],
                 ids: list[Any] | None) -> None:
        self.rewards = rewards
        self.weights = dict(zip(rewards.names, rewards.weights))
        self.policies = policies
        self.opts = opts
        self.rows = rows
        self.ids = ids

    def _call(self, columns: tuple[str, ...]) -> Call:
        rows, opts = self.rows, self.opts

        def call(reward: Any, idx: list[int]) -> list[Any]:
            prompts = [rows[i].get(opts.prompt_column, "") for i in idx]
            completions = [rows[i][opts.completion_column] for i in idx]
            cols = {k: [rows[i][k] for i in idx] for k in columns}
            ids = cols.pop("completion_ids", None)
            values = reward(prompts, completions, ids, **cols)
            if inspect.isawaitable(values):  # an AsyncReward
                values = asyncio.run(values)
            return values

        return call

    def batch(self, idx: list[int], problems: dict[int, str]) -> list[dict[str, Any]]:
        names = self.rewards.names
        values: dict[str, dict[int, Any]] = {n: {} for n in names}
        errors: dict[int, dict[str, str]] = {i: {} for i in idx}
        for i in idx:
            if i in problems:
                errors[i] = dict.fromkeys(names, problems[i])
        groups: dict[tuple[str, ...], list[int]] = {}
        skip = (self.opts.prompt_column, self.opts.completion_column)
        for i in idx:
            if i not in problems:
                groups.setdefault(tuple(sorted(k for k in self.rows[i] if k not in skip)), []).append(i)
        for columns, members in groups.items():
            call = self._call(columns)
            for reward in self.rewards:
                got, failed = score_rows(reward, call, members)
                if failed and self.policies[reward.name] == "raise":
                    bad = sorted(failed)
                    raise ScoreError(
                        f"reward {reward.name!r} failed on {_rows_text(bad, self.ids)}: {failed[bad[0]]}"
                        "\n(--on-error none scores on, counting such rows as errors)")
                values[reward.name].update(got)
                for i, message in failed.items():
                    errors[i][reward.name] = message
        records = []
        for i in idx:
            rec: dict[str, Any] = {"index": i}
            if self.ids is not None:
                rec["id"] = self.ids[i]
            for n in names:
                rec[n] = values[n].get(i)
            applicable = [(self.weights[n], rec[n]) for n in names if rec[n] is not None]
            rec[TOTAL] = None if errors[i] or not applicable else sum(w * v for w, v in applicable)
            rec["errors"] = errors[i]
            records.append(rec)
        return records


# -- files ----------------------------------------------------------------------------------------

def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _fingerprint(rows: list[Any]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, default=repr).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def _meta(opts: ScoreOptions, rewards: Any, policies: dict[str, str], rows: list[Any]) -> dict[str, Any]:
    return json.loads(json.dumps({
        "format": META_FORMAT, "rewards": rewards.names, "weights": list(rewards.weights),
        "spec": opts.spec, "on_error": policies, "prompt_column": opts.prompt_column,
        "completion_column": opts.completion_column, "id_column": opts.id_column,
        # rows identified by number must be the same rows; by id, the input may change
        "input": None if opts.id_column else _fingerprint(rows),
    }, default=repr))


def _read_partial(path: str, id_column: str | None) -> tuple[list[dict[str, Any]], int]:
    """The complete records of a partial file and the byte offset after the last one (a line cut by a
    kill is dropped)."""
    with open(path, "rb") as fh:
        data = fh.read()
    records, end = [], 0
    lines = data.splitlines(keepends=True)
    for n, line in enumerate(lines):
        if not line.endswith(b"\n"):
            break  # the last line, cut short by the kill
        try:
            rec = json.loads(line)
        except ValueError:
            raise ScoreError(f"{path}:{n + 1}: not a complete JSON record; the partial file is damaged "
                             "(delete it to start over)") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("index"), int) or (id_column and "id" not in rec):
            raise ScoreError(f"{path}:{n + 1}: not a record of rewardkit score")
        records.append(rec)
        end += len(line)
    return records, end


def _check_output(opts: ScoreOptions) -> None:
    out = opts.output
    assert out is not None
    for path in (out, out + PARTIAL_SUFFIX, out + META_SUFFIX):
        for src in (opts.data, *opts.other_inputs):
            if _same_file(path, src):
                raise ScoreError(f"refusing to write {path}: it is the input {src}; choose another -o")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ScoreError(f"cannot write {out}: no directory {parent}")
    if os.path.isdir(out):
        raise ScoreError(f"cannot write {out}: it is a directory")


# -- the run --------------------------------------------------------------------------------------

def run_score(opts: ScoreOptions, *, progress: bool = True, stdout: TextIO | None = None) -> Summary:
    """Score ``opts.data``; returns the summary. Raises :class:`ScoreError` for what the user must fix."""
    from tqdm.auto import tqdm

    from rewardkit.compose import compose
    from rewardkit.data import load_records

    stdout = stdout or sys.stdout
    if opts.batch_size < 1:
        raise ScoreError(f"batch size must be a positive integer, got {opts.batch_size}")
    if opts.on_error not in ("raise", "none"):
        raise ScoreError(f"on_error must be 'raise' or 'none', got {opts.on_error!r}")
    if opts.resume and not opts.output:
        raise ScoreError("--resume needs -o/--output (the partial file lives next to it)")
    if not os.path.exists(opts.data):
        raise ScoreError(f"no such file or directory: {opts.data}")
    if opts.output:
        _check_output(opts)
    try:
        rows = load_records(opts.data)
    except (ValueError, OSError) as exc:
        raise ScoreError(f"cannot read {opts.data}: {exc}") from None

    policies = {}
    for key, value in opts.spec.items():
        own = value.get("on_error") if isinstance(value, Mapping) else None
        if own not in (None, "raise", "none"):
            raise ScoreError(f"reward {key!r}: on_error must be 'raise' or 'none', got {own!r}")
        policies[key] = own or opts.on_error
    try:
        rewards = compose(opts.spec)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ScoreError(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)) from None
    clash = sorted(set(rewards.names) & {"index", "id", "errors", TOTAL})
    if clash:
        raise ScoreError(f"reward names {clash} are fields of every output row; give them other alias keys")
    for reward in rewards:
        reward.on_error = "raise"  # this runner applies each reward's policy itself, row by row

    if rows and not any(isinstance(r, dict) and opts.completion_column in r for r in rows):
        columns = sorted({k for r in rows if isinstance(r, dict) for k in r})
        raise ScoreError(f"{opts.data}: no column {opts.completion_column!r} in any row; columns: {columns} "
                         "(--completion-column names it)")
    ids = _row_ids(rows, opts.id_column)
    problems = {i: p for i, row in enumerate(rows) if (p := _completion_problem(row, opts.completion_column))}
    if problems and opts.on_error == "raise":
        bad = sorted(problems)
        raise ScoreError(f"{_rows_text(bad, ids)} cannot be scored: {problems[bad[0]]}"
                         "\n(--on-error none scores the other rows and counts these as errors)")

    summary = Summary(rewards.names, dict(zip(rewards.names, rewards.weights)))
    scorer = _Scorer(rewards, policies, opts, rows, ids)
    meta = _meta(opts, rewards, policies, rows)
    done: set[Any] = set()
    if opts.output:
        out = _open_partial(opts, meta, summary, done)
    else:
        out = stdout
    key = (lambda i: ids[i]) if ids is not None else (lambda i: i)
    pending = [i for i in range(len(rows)) if key(i) not in done]
    bar = tqdm(total=len(rows), initial=len(rows) - len(pending), desc="scoring", unit="row",
               disable=not (progress and opts.output))
    try:
        for start in range(0, len(pending), opts.batch_size):
            idx = pending[start:start + opts.batch_size]
            records = scorer.batch(idx, problems)
            out.write("".join(json.dumps(r) + "\n" for r in records))
            out.flush()  # a kill loses at most the batch being scored
            for r in records:
                summary.add(r)
            bar.update(len(idx))
    except BaseException as exc:
        if out is not stdout:
            out.close()
            partial = opts.output + PARTIAL_SUFFIX
            if summary.rows == 0:  # nothing scored: nothing to resume either
                os.remove(partial)
                os.remove(opts.output + META_SUFFIX)
            elif isinstance(exc, ScoreError):
                raise ScoreError(f"{exc}\nthe {summary.rows} rows scored so far are in {partial}; "
                                 "rerun with --resume to continue") from None
        raise
    finally:
        bar.close()
        if out is not stdout:
            out.close()
    if opts.output:
        partial = opts.output + PARTIAL_SUFFIX
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, opts.output)
        os.remove(opts.output + META_SUFFIX)
    return summary


def _row_ids(rows: list[Any], id_column: str | None) -> list[Any] | None:
    if id_column is None:
        return None
    ids, seen, problems = [], {}, []
    for i, row in enumerate(rows):
        value = row.get(id_column) if isinstance(row, dict) else None
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            problems.append(f"row {i} has no {id_column!r} (a string or an integer)")
        elif value in seen:
            problems.append(f"rows {seen[value]} and {i} have the same {id_column!r}: {value!r}")
        else:
            seen[value] = i
        ids.append(value)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ScoreError(f"--id-column {id_column!r} must identify every row once: {'; '.join(problems[:5])}{more}")
    return ids


def _open_partial(opts: ScoreOptions, meta: dict[str, Any], summary: Summary, done: set[Any]) -> TextIO:
    assert opts.output is not None
    partial, meta_path = opts.output + PARTIAL_SUFFIX, opts.output + META_SUFFIX
    if os.path.exists(partial) and not opts.resume:
        raise ScoreError(f"{partial} is left from an interrupted run: pass --resume to continue it, "
                         "or delete it to start over")
    if not (opts.resume and os.path.exists(partial)):
        with open(meta_path, "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
        return open(partial, "w", encoding="utf-8")
    try:
        with open(meta_path, encoding="utf-8") as fh:
            saved = json.load(fh)
    except (OSError, ValueError):
        raise ScoreError(f"{meta_path} (what the interrupted run scored) is missing or damaged; "
                         f"delete {partial} to start over") from None
    changed = [k for k in meta if saved.get(k) != meta[k]]
    if changed:
        what = ", ".join("the input rows" if k == "input" else k for k in changed)
        raise ScoreError(f"cannot resume {partial}: {what} changed since the interrupted run "
                         f"(delete {partial} to start over)")
    records, end = _read_partial(partial, opts.id_column)
    for rec in records:
        k = rec["id"] if opts.id_column else rec["index"]
        if k in done:
            raise ScoreError(f"{partial}: row {k!r} appears twice; delete it to start over")
        done.add(k)
        summary.add(rec)
    fh = open(partial, "r+", encoding="utf-8")
    fh.truncate(end)
    fh.seek(end)
    return fh


def summary_table(summary: Summary) -> Any:
    from rich.table import Table

    table = Table(title=f"{summary.rows} samples")
    for col in ("reward", "weight", "mean", "min", "max", "none", "errors"):
        table.add_column(col, justify="right" if col != "reward" else "left")
    for n in [*summary.names, TOTAL]:
        vals = summary.values[n]
        mean = sum(vals) / len(vals) if vals else math.nan
        table.add_row(n, "" if n == TOTAL else f"{summary.weights[n]:g}", f"{mean:.4f}",
                      f"{min(vals):.4f}" if vals else "-", f"{max(vals):.4f}" if vals else "-",
                      str(summary.nones[n]), str(summary.errors[n]))
    return table
