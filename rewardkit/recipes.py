"""Deprecated, and removed once every example has moved to TRL's script shape (TrlParser with
dataclass arguments; examples/run_report.py, examples/warm_start.py, rewardkit.trl.launch_state,
rewardkit.testing.resolve_model).

Small recipes the example scripts share: config loading, launch state, an SFT warm start and the
run report.

The run report is what every GRPO example leaves behind: ``metrics.jsonl`` (one line per logged
step), ``summary.json`` (start vs end of the weighted reward and of each reward, averaged over the
first and last fifth of the logged steps) and ``rewards.png`` (each reward's mean per step).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def load_example_config(default_config: str | Path, argv: Sequence[str] | None = None, *,
                        aliases: Mapping[str, str] | None = None, description: str | None = None) -> dict[str, Any]:
    """An example's YAML config with command-line overrides.

    ``--config PATH`` picks the file (default ``default_config``). Every other ``--key value``
    overrides one key: ``--grpo.max_steps 4`` for a nested key, dashes read as underscores, the
    value read as YAML (``4``, ``true``, ``null``, ``[a, b]``); a flag with no value is ``true``.
    A key the file does not have is an error that lists the keys there, so a typo never passes
    silently. ``aliases`` maps short flags to paths (``{"max_steps": "grpo.max_steps"}``); an
    alias may create its key.
    """
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Any --key value or --section.key value overrides the YAML config.")
    parser.add_argument("--config", default=str(default_config))
    known, rest = parser.parse_known_args(argv)
    cfg = yaml.safe_load(Path(known.config).read_text()) or {}
    aliases = dict(aliases or {})
    i = 0
    while i < len(rest):
        flag = rest[i]
        if not flag.startswith("--") or flag == "--":
            parser.error(f"unexpected argument {flag!r}")
        name, _, inline = flag[2:].partition("=")
        name = name.replace("-", "_")
        if inline:
            value, i = inline, i + 1
        elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            value, i = rest[i + 1], i + 2
        else:
            value, i = "true", i + 1
        path = aliases.get(name, name)
        *parents, key = path.split(".")
        node = cfg
        for part in parents:
            child = node.get(part) if isinstance(node, dict) else None
            if child is None and name in aliases:
                child = node[part] = {}
            if not isinstance(child, dict):
                parser.error(f"--{name}: the config has no section {part!r} (keys: {sorted(node)})")
            node = child
        if key not in node and name not in aliases:
            parser.error(f"--{name}: the config has no key {key!r} there (keys: {sorted(node)})")
        node[key] = yaml.safe_load(value)
    return cfg


def launch_state(use_cpu: bool | None = None) -> tuple[Any, bool]:
    """Deprecated: ``rewardkit.trl.launch_state`` (with ``rewardkit.trl.machine_defaults``)."""
    import torch

    from rewardkit.trl.launch import launch_state as _launch_state

    if use_cpu is None:
        use_cpu = not torch.cuda.is_available()
    return _launch_state(use_cpu), use_cpu


from rewardkit.testing import resolve_model as resolve_model  # noqa: E402  (moved; re-exported for now)
from rewardkit.trl.launch import end_run as end_run  # noqa: E402


def sft_warm_start(model: str, dataset: Any, output_dir: str | Path, *, steps: int = 40, learning_rate: float = 3e-3,
                   batch_size: int = 16, seed: int = 0, use_cpu: bool = False, state: Any = None) -> str:
    """Fine-tune ``model`` for ``steps`` steps on a prompt/completion ``dataset`` with TRL's
    SFTTrainer and save it to ``output_dir``; returns that path (a tiny random model needs this
    before any reward varies). ``state`` is the accelerate ``PartialState`` of a launched run."""
    from trl import SFTConfig, SFTTrainer

    is_main = state is None or state.is_main_process
    args = SFTConfig(output_dir=str(output_dir), use_cpu=use_cpu, max_steps=steps, learning_rate=learning_rate,
                     per_device_train_batch_size=batch_size, logging_steps=10, save_strategy="no", report_to="none",
                     bf16=False, seed=seed, gradient_checkpointing=False, disable_tqdm=not is_main)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    trainer.save_model(str(output_dir))
    if state is not None:
        state.wait_for_everyone()
    return str(output_dir)


def reward_history(log_history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training log entries that carry rewards (TRL logs them at every logging step)."""
    return [dict(h) for h in log_history if "reward" in h]


def write_metrics(history: Sequence[dict[str, Any]], path: str | Path) -> None:
    """One JSON line per logged step (``metrics.jsonl``)."""
    with open(path, "w", encoding="utf-8") as fh:
        for h in history:
            fh.write(json.dumps(h) + "\n")


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
    write_metrics(history, out / "metrics.jsonl")
    plot_reward_curves(history, names, out / "rewards.png", title=title, total_label=total_label)
    summary = reward_summary(history, names, weights)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
