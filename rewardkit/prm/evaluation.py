"""Evaluate a PRM on step-labelled data, and the ``rewardkit eval-prm`` command."""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rewardkit.prm.scorers import StepScorer, make_scorer


def score_records(scorer: StepScorer, records: Sequence[dict[str, Any]], *, batch_size: int = 64,
                  stats: Counter[str] | None = None, progress: bool = False) -> list[list[float] | None]:
    """Step scores of stepwise records (``prompt``, ``completions``), in chunks of ``batch_size``."""
    from tqdm.auto import tqdm

    out: list[list[float] | None] = []
    for a in tqdm(range(0, len(records), batch_size), desc="scoring", unit="batch", disable=not progress):
        chunk = records[a:a + batch_size]
        out += scorer.score([r["prompt"] for r in chunk], [r["completions"] for r in chunk], stats=stats)
    return out


def evaluate_prm(scorer: StepScorer, records: Sequence[dict[str, Any]], *, threshold: float = 0.5,
                 batch_size: int = 64, use_evaluate: bool = True, progress: bool = False) -> dict[str, Any]:
    """Score ``records`` and compute the ``prm_eval`` metric (loaded by path through ``evaluate``).

    Rows the scorer could not score (too long) are left out of the metric and counted under
    ``unscored``; ``truncated`` counts rows whose prompt was cut.
    """
    stats: Counter[str] = Counter()
    scores = score_records(scorer, records, batch_size=batch_size, stats=stats, progress=progress)
    preds, refs = [], []
    unscored = 0
    for rec, sc in zip(records, scores):
        if sc is None:
            unscored += 1
            continue
        preds.append(list(sc))
        refs.append([float(y) for y in rec["labels"]])
    if use_evaluate:
        from rewardkit.metrics.prm_eval import load

        result = load().compute(predictions=preds, references=refs, threshold=threshold)
    else:
        from rewardkit.metrics.prm_eval import compute_prm_metrics

        result = compute_prm_metrics(preds, refs, threshold)
    result.update({"unscored": unscored, "truncated": int(stats.get("truncated", 0)), "threshold": threshold})
    return result


def configure_cli(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="step-labelled file: Math-Shepherd, PRM800K or TRL stepwise (.jsonl/.json/.parquet), "
                                "'toy' for the bundled toy test split, or 'champ' for CHAMP's first-wrong-step "
                                "annotations (with random and last-step baselines)")
    p.add_argument("--model", help="PRM path or id (tagged/prefix backends)")
    p.add_argument("--backend", choices=["tagged", "prefix", "remote"], default="tagged")
    p.add_argument("--url", help="scorer URL (remote backend)")
    p.add_argument("--head", choices=["token_cls", "lm", "value"], help="score head (default: from the model)")
    p.add_argument("--step-tag", help="the PRM's step tag (default: rewardkit_prm.json beside the model)")
    p.add_argument("--good-token", default="+")
    p.add_argument("--bad-token", default="-")
    p.add_argument("--format", default="auto", choices=["auto", "math_shepherd", "prm800k", "trl"])
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, help="evaluate only the first N records")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    champ = p.add_argument_group("champ")
    champ.add_argument("--reward", help="score with a registered process reward instead of a PRM backend")
    champ.add_argument("--reward-params", default="{}", help="JSON parameters of --reward")
    champ.add_argument("--tune-threshold", action="store_true",
                       help="also report the threshold with the best ProcessBench F1 (tuned on the same data)")
    champ.add_argument("--seed", type=int, default=0, help="seed of the random baseline")


def _scorer_from_args(args: argparse.Namespace) -> StepScorer:
    if args.backend == "remote":
        if not args.url:
            raise SystemExit("--backend remote needs --url")
        return make_scorer("remote", url=args.url, batch_size=args.batch_size)
    if not args.model:
        raise SystemExit(f"--backend {args.backend} needs --model PATH")
    params: dict[str, Any] = {"model": args.model, "head": args.head, "max_length": args.max_length,
                              "batch_size": args.batch_size, "good_token": args.good_token,
                              "bad_token": args.bad_token}
    if args.step_tag is not None:
        params["step_tag"] = args.step_tag.encode().decode("unicode_escape")
    return make_scorer(args.backend, **params)


def run_cli(args: argparse.Namespace) -> int:
    from rewardkit.data.steps import load_steps, load_toy_steps

    if args.data == "champ":
        return run_champ(args)
    records = load_toy_steps("test") if args.data == "toy" else load_steps(args.data, args.format)
    if args.limit:
        records = records[: args.limit]
    scorer = _scorer_from_args(args)
    result = evaluate_prm(scorer, records, threshold=args.threshold, batch_size=args.batch_size,
                          progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PRM evaluation: {args.data} ({len(records)} solutions)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float):
            text = "nan" if math.isnan(value) else f"{value:.4f}"
        else:
            text = str(value)
        table.add_row(key, text)
    Console().print(table)
    return 0


# -- CHAMP: first-wrong-step identification (``rewardkit eval-prm champ``) ---------------------------

def first_wrong_metrics(step_scores: Sequence[Sequence[float] | None], first_wrong: Sequence[int], *,
                        threshold: float = 0.5) -> dict[str, Any]:
    """ProcessBench-style metrics from step scores and gold first-wrong-step indices (-1: no mistake).

    The predicted first wrong step is the first step scored below ``threshold`` (-1 when none).
    ``first_wrong_step_accuracy`` is the exact-match rate over all solutions; ``error_accuracy``,
    ``correct_accuracy`` and ``processbench_f1`` (their harmonic mean) as in ``prm_eval``. Step
    metrics count only annotated steps: every step of a correct solution, and the steps up to and
    including the first wrong one otherwise (what comes after it is not labelled). Rows without
    scores (``None``) are left out and counted under ``unscored``.
    """
    from rewardkit.metrics.prm_eval import compute_prm_metrics, earliest_error

    if len(step_scores) != len(first_wrong):
        raise ValueError(f"{len(step_scores)} score rows but {len(first_wrong)} first-wrong-step labels")
    preds, refs, hits, unscored = [], [], 0, 0
    for i, (scores, fw) in enumerate(zip(step_scores, first_wrong)):
        if scores is None:
            unscored += 1
            continue
        if not -1 <= fw < len(scores):
            raise ValueError(f"solution {i}: first wrong step {fw} but {len(scores)} step scores")
        n = len(scores) if fw < 0 else fw + 1
        preds.append([float(x) for x in scores[:n]])
        refs.append([1.0] * n if fw < 0 else [1.0] * fw + [0.0])
        hits += earliest_error([float(x) >= threshold for x in scores]) == fw
    result: dict[str, Any] = {"first_wrong_step_accuracy": hits / len(preds) if preds else float("nan")}
    result.update(compute_prm_metrics(preds, refs, threshold))
    result.update({"unscored": unscored, "threshold": threshold})
    return result


def baseline_scores(records: Sequence[dict[str, Any]], kind: str, *, seed: int = 0) -> list[list[float]]:
    """Step scores of a baseline: ``"random"`` (the first wrong step drawn uniformly from -1 and every
    step index) or ``"last_step"`` (always the last step); 1.0 before that step, 0.0 from it on."""
    import random

    if kind not in ("random", "last_step"):
        raise ValueError(f"unknown baseline {kind!r}: 'random' or 'last_step'")
    rng = random.Random(seed)
    out = []
    for rec in records:
        n = len(rec["completions"])
        k = rng.randrange(-1, n) if kind == "random" else n - 1
        out.append([1.0 if k < 0 or i < k else 0.0 for i in range(n)])
    return out


def best_threshold(step_scores: Sequence[Sequence[float] | None], first_wrong: Sequence[int], *,
                   candidates: int = 101) -> float:
    """The threshold (among ``candidates`` quantiles of the scores) with the best ProcessBench F1 on
    these very solutions: an optimistic bound for scores that are not probabilities."""
    values = sorted(float(x) for row in step_scores if row is not None for x in row if math.isfinite(float(x)))
    if not values:
        return 0.5
    grid = sorted({values[min(len(values) - 1, round(q * (len(values) - 1) / (candidates - 1)))]
                   for q in range(candidates)} | {math.nextafter(values[-1], math.inf)})
    best, best_f1 = grid[0], -1.0
    for t in grid:
        f1 = first_wrong_metrics(step_scores, first_wrong, threshold=t)["processbench_f1"]
        if not math.isnan(f1) and f1 > best_f1:
            best, best_f1 = t, f1
    return best


def scores_on_steps(step_scores: Any, spans: Sequence[tuple[int, int]]) -> tuple[list[float] | None, int]:
    """A process reward's ``StepScores`` (its own steps and spans) placed on the given step spans of
    the same text: each step gets the lowest score among the reward's steps that overlap it. A step
    no reward step overlaps gets +inf (never flagged); their number is returned too."""
    if step_scores is None:
        return None, 0
    out, missing = [], 0
    for a, b in spans:
        hit = [float(v) for v, (ra, rb) in zip(step_scores.scores, step_scores.spans) if ra < b and rb > a]
        if not hit:
            missing += 1
        out.append(min(hit) if hit else math.inf)
    return out, missing


def reward_step_scores(reward: Any, records: Sequence[dict[str, Any]], *, batch_size: int = 16,
                       stats: Counter[str] | None = None, progress: bool = False) -> list[list[float] | None]:
    """Scores of a registered process reward (``ProcessReward.score_steps``) on each record's whole
    ``text``, placed on the record's ``spans`` with :func:`scores_on_steps`."""
    from tqdm.auto import tqdm

    out: list[list[float] | None] = []
    for a in tqdm(range(0, len(records), batch_size), desc="scoring", unit="batch", disable=not progress):
        chunk = records[a:a + batch_size]
        got = reward.score_steps([r["prompt"] for r in chunk], [r["text"] for r in chunk])
        for rec, ss in zip(chunk, got):
            row, missing = scores_on_steps(ss, rec["spans"])
            out.append(row)
            if stats is not None:
                stats["unscored_steps"] += missing
    return out


def run_champ(args: argparse.Namespace) -> int:
    """``rewardkit eval-prm champ``: a PRM scorer or a process reward on CHAMP, with baselines."""
    from rewardkit.data.champ import load_champ

    records = load_champ()
    if args.limit:
        records = records[: args.limit]
    first_wrong = [r["first_wrong"] for r in records]
    stats: Counter[str] = Counter()
    if args.reward:
        from rewardkit.plugins import get_reward

        reward = get_reward(args.reward, **json.loads(args.reward_params))
        name = args.reward
        scores = reward_step_scores(reward, records, batch_size=args.batch_size, stats=stats, progress=not args.json)
    else:
        name = args.model or args.url or args.backend
        scores = score_records(_scorer_from_args(args), records, batch_size=args.batch_size, stats=stats,
                               progress=not args.json)
    rows: dict[str, dict[str, Any]] = {name: first_wrong_metrics(scores, first_wrong, threshold=args.threshold)}
    if args.tune_threshold:
        t = best_threshold(scores, first_wrong)
        rows[f"{name} (tuned threshold)"] = first_wrong_metrics(scores, first_wrong, threshold=t)
    for kind in ("random", "last_step"):
        rows[kind] = first_wrong_metrics(baseline_scores(records, kind, seed=args.seed), first_wrong)
    extra = {"solutions": len(records), "erroneous": sum(f >= 0 for f in first_wrong),
             "unscored_steps": int(stats.get("unscored_steps", 0)), "truncated": int(stats.get("truncated", 0))}
    if args.json:
        print(json.dumps({"data": "champ", **extra, "results": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    cols = ["first_wrong_step_accuracy", "error_accuracy", "correct_accuracy", "processbench_f1", "step_f1",
            "threshold", "unscored"]
    table = Table(title=f"CHAMP first wrong step: {extra['solutions']} solutions ({extra['erroneous']} with a "
                        f"mistake); unscored steps {extra['unscored_steps']}, truncated {extra['truncated']}")
    table.add_column("scorer")
    for c in cols:
        table.add_column(c, justify="right")
    for key, res in rows.items():
        table.add_row(key, *[f"{res[c]:.4f}" if isinstance(res[c], float) else str(res[c]) for c in cols])
    Console().print(table)
    return 0
