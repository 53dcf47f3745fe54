"""Offline data selection (paper §4.1, Eq. 11) and Best-of-N (§4.3), as APIs and CLI commands.

* :func:`select_top_k` scores trajectory–response pairs with a reward (default
  ``reasonflux.prm``: mean step score + alpha × trajectory score) and keeps the top k.
* :func:`best_of_n` picks, for every question, the candidate response a reward likes best, and
  reports its accuracy against gold answers next to majority vote, random choice and the oracle
  (pass@N), for several N. Any registered reward works (``reasonflux.prm``, ``dreamprm.prm``, ...).

CLI (registered through ``rewardkit_register_commands``)::

    rewardkit select pairs.jsonl --reward reasonflux.prm --param model=PATH --top-k 1000 -o top.jsonl
    rewardkit bon candidates.jsonl --reward reasonflux.prm --param model=PATH --n 1,2,4,8
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _reward(reward: Any, params: dict[str, Any] | None = None):
    import rewardkit

    if isinstance(reward, str):
        return rewardkit.get_reward(reward, **(params or {}))
    if params:
        raise ValueError("params only apply when the reward is given by name")
    return reward


def quantiles(values: Sequence[float], qs: Sequence[float] = QUANTILES) -> dict[float, float]:
    """Linear-interpolated quantiles (numpy's default method)."""
    xs = sorted(values)
    if not xs:
        return {q: float("nan") for q in qs}
    out = {}
    for q in qs:
        pos = q * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        out[q] = xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
    return out


def pair_completion(row: dict[str, Any], thinking_column: str, response_column: str) -> str:
    """``<think>{thinking}</think>{response}``: how a trajectory–response pair reaches a reward."""
    thinking = row.get(thinking_column) or ""
    if isinstance(thinking, list):
        thinking = "\n\n".join(str(s) for s in thinking)
    return f"<think>{thinking}</think>{row.get(response_column) or ''}"


def score_records(records: Sequence[dict[str, Any]], reward: Any, *, params: dict[str, Any] | None = None,
                  question_column: str = "question", thinking_column: str = "thinking",
                  response_column: str = "response", completion_column: str | None = None,
                  batch_size: int = 32, progress: bool = False) -> list[float | None]:
    """One reward value per record (None where the reward does not apply)."""
    from tqdm.auto import tqdm

    fn = _reward(reward, params)
    scores: list[float | None] = []
    for a in tqdm(range(0, len(records), batch_size), desc="scoring", unit="batch", disable=not progress):
        chunk = records[a:a + batch_size]
        prompts = [r.get(question_column, r.get("prompt", "")) for r in chunk]
        if completion_column is not None:
            completions = [r[completion_column] for r in chunk]
        else:
            completions = [pair_completion(r, thinking_column, response_column) for r in chunk]
        skip = {question_column, "prompt", completion_column, thinking_column, response_column}
        keys = [k for k in chunk[0] if k not in skip and all(k in r for r in chunk)]
        columns = {k: [r[k] for r in chunk] for k in keys}
        scores += fn(prompts, completions, **columns)
    return scores


def select_top_k(records: Sequence[dict[str, Any]], reward: Any = "reasonflux.prm", k: int = 1000, *,
                 params: dict[str, Any] | None = None, score_key: str = "reasonflux_score",
                 **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Keep the ``k`` highest-scoring records (ties keep file order; unscored rows are never kept).

    Returns the selected records (each with ``score_key`` added), highest first, and a summary with
    the score quantiles of all rows, of the selected rows, and the number of unscored rows.
    """
    scores = score_records(records, reward, params=params, **kwargs)
    scored = [(s, i) for i, s in enumerate(scores) if s is not None]
    scored.sort(key=lambda t: (-t[0], t[1]))
    keep = scored[:k]
    selected = [{**records[i], score_key: s} for s, i in keep]
    summary = {"total": len(records), "scored": len(scored), "unscored": len(records) - len(scored),
               "selected": len(selected), "quantiles_all": quantiles([s for s, _ in scored]),
               "quantiles_selected": quantiles([s for s, _ in keep]),
               "threshold": keep[-1][0] if keep else None}
    return selected, summary


# -- Best-of-N -------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def final_answer(text: str) -> str | None:
    """The answer a response commits to (for majority vote): its last ``\\boxed{}``, else its last
    number; normalised by removing spaces and a trailing period."""
    from rewardkit import last_boxed

    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    ans = last_boxed(text)
    if ans is None:
        nums = _NUMBER.findall(text)
        ans = nums[-1] if nums else None
    if ans is None:
        return None
    ans = ans.replace(" ", "").rstrip(".")
    return ans or None


def group_candidates(records: Sequence[dict[str, Any]], *, question_column: str = "question",
                     responses_column: str = "responses", response_column: str = "response",
                     gold_column: str = "solution") -> list[dict[str, Any]]:
    """Rows with a list of responses, or one row per (question, response) grouped by question."""
    if records and responses_column in records[0]:
        return [{"question": r.get(question_column, r.get("prompt", "")), "responses": list(r[responses_column]),
                 "gold": r.get(gold_column), "row": r} for r in records]
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        q = r.get(question_column, r.get("prompt", ""))
        key = json.dumps(q, sort_keys=True) if not isinstance(q, str) else q
        g = groups.setdefault(key, {"question": q, "responses": [], "gold": r.get(gold_column), "row": r})
        g["responses"].append(r[response_column])
    return list(groups.values())


def best_of_n(records: Sequence[dict[str, Any]], reward: Any, *, params: dict[str, Any] | None = None,
              n_values: Sequence[int] | None = None, gold_column: str = "solution", question_column: str = "question",
              responses_column: str = "responses", response_column: str = "response", batch_size: int = 32,
              progress: bool = False) -> dict[str, Any]:
    """Best-of-N by ``reward`` vs majority vote, random choice and oracle, for each N in ``n_values``
    (default: powers of two up to the largest pool, and the largest pool).

    The first N candidates of each question are used for N. Accuracy is ``math.accuracy`` against
    the gold column. Random choice is the exact expectation (mean correctness of the N candidates).
    A candidate the reward does not score (None) is never picked unless all are None (then the
    first). Returns ``{"n": {N: {"bon", "majority", "random", "oracle", "questions"}}, "picks": ...}``.
    """
    from tqdm.auto import tqdm

    import rewardkit

    fn = _reward(reward, params)
    groups = [g for g in group_candidates(records, question_column=question_column, responses_column=responses_column,
                                          response_column=response_column, gold_column=gold_column)
              if g["responses"] and g["gold"] is not None]
    if not groups:
        raise ValueError(f"no question has both candidate responses and a gold answer in column {gold_column!r}")
    max_n = max(len(g["responses"]) for g in groups)
    n_values = sorted(set(n_values or [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= max_n] + [max_n]))
    acc = rewardkit.get_reward("math.accuracy", gold_column="gold")
    flat_q, flat_c, flat_g, flat_cols = [], [], [], []
    for g in groups:
        for c in g["responses"]:
            flat_q.append(g["question"])
            flat_c.append(c)
            flat_g.append(g["gold"])
            flat_cols.append(g["row"])
    correct: list[float | None] = []
    scores: list[float | None] = []
    for a in tqdm(range(0, len(flat_c), batch_size), desc="best-of-n", unit="batch", disable=not progress):
        sl = slice(a, a + batch_size)
        correct += acc(flat_q[sl], flat_c[sl], gold=flat_g[sl])
        rows = flat_cols[sl]
        skip = {question_column, "prompt", responses_column, response_column}
        keys = [k for k in rows[0] if k not in skip and all(k in r for r in rows)]
        cols = {k: [r[k] for r in rows] for k in keys}
        if gold_column not in cols:
            cols[gold_column] = flat_g[sl]
        scores += fn(flat_q[sl], flat_c[sl], **cols)
    report: dict[str, Any] = {"reward": getattr(fn, "name", str(reward)), "questions": len(groups), "n": {}}
    picks: list[int] = []
    pos = 0
    per_group = []
    for g in groups:
        k = len(g["responses"])
        per_group.append((correct[pos:pos + k], scores[pos:pos + k], g["responses"]))
        pos += k
    for n in n_values:
        bon = maj = rnd = ora = 0.0
        m = 0
        for corr, sc, resp in per_group:
            if len(resp) < n:
                continue
            c = [float(x or 0.0) for x in corr[:n]]
            s = sc[:n]
            m += 1
            valid = [i for i in range(n) if s[i] is not None]
            pick = max(valid, key=lambda i: (s[i], -i)) if valid else 0
            bon += c[pick]
            answers = [final_answer(r) for r in resp[:n]]
            votes = Counter(a for a in answers if a is not None)
            if votes:
                top = max(votes.values())
                winner = next(a for a in answers if a is not None and votes[a] == top)
                maj += c[answers.index(winner)]
            rnd += sum(c) / n
            ora += max(c)
            if n == n_values[-1]:
                picks.append(pick)
        report["n"][n] = {"bon": bon / m if m else float("nan"), "majority": maj / m if m else float("nan"),
                          "random": rnd / m if m else float("nan"), "oracle": ora / m if m else float("nan"),
                          "questions": m}
    report["picks"] = picks
    report["unscored"] = sum(1 for s in scores if s is None)
    return report


# -- CLI -------------------------------------------------------------------------------------------

def _params(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def configure_select(p) -> None:
    p.add_argument("data", help="JSONL/JSON/parquet file or datasets directory of trajectory-response pairs")
    p.add_argument("--reward", default="reasonflux.prm", help="registered reward to rank by (default reasonflux.prm)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="reward parameter (YAML value), e.g. --param model=PATH --param alpha=1.0")
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--question-column", default="question")
    p.add_argument("--thinking-column", default="thinking")
    p.add_argument("--response-column", default="response")
    p.add_argument("--completion-column", default=None,
                   help="score this column as the completion instead of <think>thinking</think>response")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("-o", "--output", required=True, help="write the selected rows (JSONL) here")


def run_select(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from rewardkit.data import load_records

    rows = load_records(args.data)
    selected, summary = select_top_k(rows, args.reward, args.top_k, params=_params(args.param),
                                     question_column=args.question_column, thinking_column=args.thinking_column,
                                     response_column=args.response_column, completion_column=args.completion_column,
                                     batch_size=args.batch_size, progress=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        for r in selected:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    console = Console(stderr=True)
    table = Table(title=f"{args.reward}: kept {summary['selected']} of {summary['total']} "
                        f"({summary['unscored']} unscored)")
    table.add_column("quantile")
    table.add_column("all", justify="right")
    table.add_column("selected", justify="right")
    for q in QUANTILES:
        table.add_row(f"{q:g}", f"{summary['quantiles_all'][q]:.4f}", f"{summary['quantiles_selected'][q]:.4f}")
    console.print(table)
    return 0


def configure_bon(p) -> None:
    p.add_argument("data", help="rows with a list of responses (--responses-column) or one row per response")
    p.add_argument("--reward", required=True, help="registered reward that picks the best response")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="reward parameter (YAML value)")
    p.add_argument("--n", default=None, help="comma-separated N values (default powers of two up to the pool)")
    p.add_argument("--question-column", default="question")
    p.add_argument("--responses-column", default="responses")
    p.add_argument("--response-column", default="response")
    p.add_argument("--gold-column", default="solution")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("-o", "--output", help="write the report as JSON here")


def run_bon(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from rewardkit.data import load_records

    n_values = [int(x) for x in args.n.split(",")] if args.n else None
    report = best_of_n(load_records(args.data), args.reward, params=_params(args.param), n_values=n_values,
                       gold_column=args.gold_column, question_column=args.question_column,
                       responses_column=args.responses_column, response_column=args.response_column,
                       batch_size=args.batch_size, progress=True)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            json.dump({**report, "n": {str(k): v for k, v in report["n"].items()}}, fh, indent=2)
    table = Table(title=f"Best-of-N by {report['reward']} on {report['questions']} questions")
    for col in ("N", "best-of-N", "majority", "random", "oracle"):
        table.add_column(col, justify="right")
    for n, r in report["n"].items():
        table.add_row(str(n), f"{r['bon']:.3f}", f"{r['majority']:.3f}", f"{r['random']:.3f}", f"{r['oracle']:.3f}")
    Console(file=sys.stdout).print(table)
    return 0
