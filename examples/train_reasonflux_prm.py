"""Train a ReasonFlux PRM: λ_step · MSE(step) + λ_traj · MSE(trajectory).

    python examples/train_reasonflux_prm.py --config examples/configs/reasonflux_train_prm.yaml

By default it trains the offline tiny token-classification PRM on the toy set bundled with
rewardkit-reasonflux (arithmetic trajectories with ReasonFlux step targets, see
``rewardkit_reasonflux.toy``), holding out whole problems. Arguments are this script's (below) and
every ``ReasonFluxPRMConfig`` field (``lambda_step``, ``epochs``, ...). Writes into ``output_dir``:
``prm/`` (the trained PRM, loadable by ``reasonflux.prm``), ``history.json`` (loss terms and held-out
correlations per epoch), ``summary.json`` and ``training.png``.

``--data`` may instead name a JSONL of records ``{question, thinking, response, step_targets,
trajectory_target}``; with ``--build_targets`` the targets are computed first from
``reasonflux.step`` (and ``reasonflux.trajectory`` when ``trajectory`` is given).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TrainPRMArguments:
    model: str = field(default="tiny", metadata={"help": "'tiny' (the offline token-classification PRM) or a path"})
    data: str = field(default="toy", metadata={"help": "'toy' or a JSONL of records with targets"})
    held_out_fraction: float = field(default=0.25, metadata={"help": "whole questions held out for the correlation"})
    build_targets: bool = field(default=False, metadata={"help": "compute the targets with the rewards below first"})
    step_reward: dict | str | None = field(default=None, metadata={"help": "reasonflux.step parameters (YAML)"})
    trajectory: dict | str | None = field(default=None, metadata={"help": "reasonflux.trajectory parameters (YAML)"})
    target_transform: str = "minmax"
    torch_threads: int = field(default=1, metadata={"help": "tiny models run fastest on one thread on a shared CPU"})

    def __post_init__(self) -> None:
        for name in ("step_reward", "trajectory"):
            value = getattr(self, name)
            value = yaml.safe_load(value) if isinstance(value, str) else value
            if not isinstance(value, dict | None):
                raise ValueError(f"{name} must be a mapping, got {value!r}")
            setattr(self, name, value)


def plot(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    tr = [h for h in history if "loss" in h]
    for key in ("loss", "step_loss", "traj_loss"):
        a.plot([h["epoch"] for h in tr], [h[key] for h in tr], label=key)
    for key in ("eval_step_corr", "eval_traj_corr"):
        b.plot([h["epoch"] for h in history], [h[key] for h in history], marker="o", label=key)
    a.set_title("training loss")
    b.set_title("held-out Pearson r (prediction vs target)")
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: TrainPRMArguments, config) -> dict[str, Any]:
    import torch
    from rewardkit_reasonflux.toy import held_out_split, load_toy_records
    from rewardkit_reasonflux.training import ReasonFluxPRMTrainer, build_targets

    import rewardkit
    from rewardkit.data import load_records
    from rewardkit.testing import tiny_model_dir

    torch.set_num_threads(args.torch_threads)
    out = Path(config.output_dir or "runs/reasonflux_prm")  # the run's directory; the PRM goes to prm/ in it
    out.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model == "tiny":  # train a copy: the cached tiny PRM is shared by tests and other examples
        model = str(out / "init")
        shutil.copytree(tiny_model_dir("prm", seed=config.seed), model, dirs_exist_ok=True)
    records = load_toy_records() if args.data == "toy" else load_records(args.data)
    if args.build_targets:
        step = rewardkit.get_reward("reasonflux.step", **(args.step_reward or {}))
        traj = rewardkit.get_reward("reasonflux.trajectory", **args.trajectory) if args.trajectory else None
        records = build_targets(records, step, traj, transform=args.target_transform)
    train, held_out = held_out_split(records, args.held_out_fraction)
    print(f"{len(train)} training records, {len(held_out)} held-out records ({len(records)} in all)")
    history = ReasonFluxPRMTrainer(model, replace(config, output_dir=str(out / "prm"))).train(train, held_out)
    (out / "history.json").write_text(json.dumps(history, indent=2))
    plot(history, out / "training.png")
    first, last = next(h for h in history if "loss" in h), history[-1]
    summary = {"loss_first_epoch": first["loss"], "loss_last_epoch": last["loss"],
               "held_out_step_corr_before": history[0]["eval_step_corr"], "held_out_step_corr_after": last["eval_step_corr"],
               "held_out_traj_corr_before": history[0]["eval_traj_corr"], "held_out_traj_corr_after": last["eval_traj_corr"],
               "prm": str(out / "prm")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    from rewardkit_reasonflux.training import ReasonFluxPRMConfig
    from trl import TrlParser

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(*TrlParser((TrainPRMArguments, ReasonFluxPRMConfig)).parse_args_and_config())
