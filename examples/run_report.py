"""The run report every GRPO example leaves in its output directory:

* ``metrics.jsonl``: one line per logged step (TRL's log entries that carry a reward);
* ``summary.json``: start vs end (mean of the first and last fifth of the logged steps) of the
  weighted reward and of each reward;
* ``rewards.png``: each reward's mean per step, and the weighted total.

It lives with the examples, not in the library: it needs matplotlib, and a training script of your
own may report however it likes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def reward_history(log_history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training log entries that carry rewards (TRL logs them at every logging step)."""
    return [dict(h) for h in log_history if "reward" in h]


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float:
    vals = [h[key] for h in rows if key in h]
    return sum(vals) / len(vals) if vals else float("nan")


def reward_summary(history: Sequence[dict[str, Any]], names: Sequence[str],
                   weights: Sequence[float] | None = None) -> dict[str, Any]:
    """Start vs end (mean of the first and last fifth of logged steps) of every reward."""
    k = max(1, len(history) // 5)
    head, tail = history[:k], history[-k:]
    summary: dict[str, Any] = {"steps": len(history), "reward_start": _mean(head, "reward"),
                               "reward_end": _mean(tail, "reward")}
    if weights is not None:
        summary["weights"] = dict(zip(names, weights))
    summary["per_reward_start"] = {n: _mean(head, f"rewards/{n}/mean") for n in names}
    summary["per_reward_end"] = {n: _mean(tail, f"rewards/{n}/mean") for n in names}
    return summary


def plot_reward_curves(history: Sequence[dict[str, Any]], names: Sequence[str], path: str | Path, *,
                       title: str = "rewardkit: composed rewards during GRPO",
                       total_label: str = "weighted total") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in [(f"rewards/{n}/mean", n) for n in names] + [("reward", total_label)]:
        pts = [(h["step"], h[key]) for h in history if key in h]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=label, lw=2 if key == "reward" else 1.2)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_run_report(log_history: Sequence[dict[str, Any]], names: Sequence[str], output_dir: str | Path, *,
                     weights: Sequence[float] | None = None, title: str = "rewardkit: composed rewards during GRPO",
                     total_label: str = "weighted total") -> dict[str, Any]:
    """Write metrics.jsonl, summary.json and rewards.png into ``output_dir``; returns the summary."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    history = reward_history(log_history)
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for h in history:
            fh.write(json.dumps(h) + "\n")
    plot_reward_curves(history, names, out / "rewards.png", title=title, total_label=total_label)
    summary = reward_summary(history, names, weights)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
