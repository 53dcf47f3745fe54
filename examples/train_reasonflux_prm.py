"""Train a ReasonFlux PRM: λ_step · MSE(step) + λ_traj · MSE(trajectory), driven by a YAML config.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/train_reasonflux_prm.py --config examples/configs/reasonflux_train_prm.yaml

By default it trains the offline tiny token-classification PRM on the toy set bundled with
rewardkit-reasonflux (arithmetic trajectories with ReasonFlux step targets, see
``rewardkit_reasonflux.toy``), holding out whole problems, and writes into ``output_dir``:
``prm/`` (the trained PRM, loadable by ``reasonflux.prm``), ``history.json`` (train loss terms and
held-out correlations per epoch) and ``training.png``.

``data:`` may instead name a JSONL of records ``{question, thinking, response, step_targets,
trajectory_target}``; with ``build_targets: true`` the targets are computed first from
``reasonflux.step`` (and ``reasonflux.trajectory`` when ``trajectory`` is configured).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def load_records(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from rewardkit_reasonflux.toy import load_toy_records

    from rewardkit.data import load_records as read

    data = cfg.get("data", "toy")
    records = load_toy_records() if data == "toy" else read(data)
    if cfg.get("build_targets"):
        from rewardkit_reasonflux.training import build_targets

        import rewardkit

        step = rewardkit.get_reward("reasonflux.step", **cfg.get("step_reward", {}))
        traj = rewardkit.get_reward("reasonflux.trajectory", **cfg["trajectory"]) if cfg.get("trajectory") else None
        records = build_targets(records, step, traj, transform=cfg.get("target_transform", "minmax"))
    return records


def split(records: list[dict[str, Any]], held_out_fraction: float) -> tuple[list, list]:
    """Hold out whole questions, so no held-out problem was seen in training."""
    questions = list(dict.fromkeys(r["question"] for r in records))
    n_eval = max(1, int(len(questions) * held_out_fraction))
    held = set(questions[-n_eval:])
    return [r for r in records if r["question"] not in held], [r for r in records if r["question"] in held]


def plot(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    tr = [h for h in history if "loss" in h]
    for key in ("loss", "step_loss", "traj_loss"):
        a.plot([h["epoch"] for h in tr], [h[key] for h in tr], label=key)
    a.set_xlabel("epoch")
    a.set_title("training loss")
    a.legend()
    for key in ("eval_step_corr", "eval_traj_corr"):
        b.plot([h["epoch"] for h in history], [h[key] for h in history], marker="o", label=key)
    b.set_xlabel("epoch")
    b.set_title("held-out Pearson r (prediction vs target)")
    b.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from accelerate import PartialState
    from rewardkit_reasonflux.training import ReasonFluxPRMConfig, ReasonFluxPRMTrainer

    from rewardkit.recipes import load_example_config
    from rewardkit.testing import tiny_model_dir

    cfg = load_example_config("examples/configs/reasonflux_train_prm.yaml", description=__doc__,
                              aliases={"epochs": "train.epochs"})
    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg["torch_threads"]))
    state = PartialState()
    if not state.is_main_process:  # a small single-process job: other ranks have nothing to do
        return
    out = Path(cfg.get("output_dir", "runs/reasonflux_prm"))
    out.mkdir(parents=True, exist_ok=True)
    model = cfg.get("model", "tiny")
    if model == "tiny":
        # train a copy: the cached tiny PRM is shared by tests and other examples
        src = tiny_model_dir("prm", seed=cfg.get("seed", 0))
        model = str(out / "init")
        shutil.copytree(src, model, dirs_exist_ok=True)
    records = load_records(cfg)
    train, held_out = split(records, cfg.get("held_out_fraction", 0.25))
    print(f"{len(train)} training records, {len(held_out)} held-out records ({len(records)} in all)")
    tcfg = ReasonFluxPRMConfig(**cfg.get("train", {}), seed=cfg.get("seed", 0), output_dir=str(out / "prm"))
    trainer = ReasonFluxPRMTrainer(model, tcfg)
    history = trainer.train(train, held_out)
    for h in history:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in h.items()}))
    (out / "history.json").write_text(json.dumps(history, indent=2))
    plot(history, out / "training.png")
    first = next(h for h in history if "loss" in h)
    summary = {"loss_first_epoch": first["loss"], "loss_last_epoch": history[-1]["loss"],
               "held_out_step_corr_before": history[0]["eval_step_corr"],
               "held_out_step_corr_after": history[-1]["eval_step_corr"],
               "held_out_traj_corr_before": history[0]["eval_traj_corr"],
               "held_out_traj_corr_after": history[-1]["eval_traj_corr"], "prm": str(out / "prm")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
