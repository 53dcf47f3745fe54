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
                                "or 'toy' for the bundled toy test split")
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


def run_cli(args: argparse.Namespace) -> int:
    from rewardkit.data.steps import load_steps, load_toy_steps

    records = load_toy_steps("test") if args.data == "toy" else load_steps(args.data, args.format)
    if args.limit:
        records = records[: args.limit]
    if args.backend == "remote":
        if not args.url:
            raise SystemExit("--backend remote needs --url")
        scorer = make_scorer("remote", url=args.url, batch_size=args.batch_size)
    else:
        if not args.model:
            raise SystemExit(f"--backend {args.backend} needs --model PATH")
        params: dict[str, Any] = {"model": args.model, "head": args.head, "max_length": args.max_length,
                                  "batch_size": args.batch_size, "good_token": args.good_token,
                                  "bad_token": args.bad_token}
        if args.step_tag is not None:
            params["step_tag"] = args.step_tag.encode().decode("unicode_escape")
        scorer = make_scorer(args.backend, **params)
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
