"""DreamPRM bi-level training: learn domain weights and a reweighted PRM, compare with uniform weights.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/dreamprm_bilevel.py --config examples/configs/dreamprm_bilevel.yaml

Writes to ``output_dir``: ``domain_weights.png`` (weights over upper steps), ``history_<run>.json``,
``summary.json`` (final weight table, Best-of-N accuracy of the weighted and the uniform PRM),
``prm_<run>/`` (the trained PRMs, loadable by ``dreamprm.prm``), ``eval.jsonl`` (Best-of-N pool in
the ``rewardkit bon`` format) and checkpoints every ``save_steps`` (resume with ``--resume``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch


def is_main() -> bool:
    """Rank 0 by torch.distributed (accelerate reports one process for DeepSpeed on CPU)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def build_data(cfg: dict[str, Any]) -> dict[str, Any]:
    from rewardkit_dreamprm import data as D
    from rewardkit_dreamprm.toy import make_toy

    if "toy" in cfg:
        return make_toy(**cfg["toy"], seed=cfg.get("data_seed", 0))
    d = cfg["data"]
    train = {"v1": D.load_v1_train, "1.5": D.load_v15_train, "generic": D.load_generic}[d.get("train_format", "v1")](
        d["train"])
    meta = {"v1": D.load_v1_meta, "1.5": D.load_v15_meta, "generic": D.load_meta_generic}[d.get("meta_format", "v1")](
        d["meta"])
    return {"train": train, "meta": meta, "eval": [], "corrupted": ()}


def load_model(cfg: dict[str, Any], variant: str, seed: int):
    from rewardkit_dreamprm import load_prm

    from rewardkit.testing import tiny_model_dir

    torch.manual_seed(seed)
    path = str(tiny_model_dir("causal_lm")) if cfg.get("model", "tiny") == "tiny" else cfg["model"]
    return load_prm(path, variant=variant)


def run_one(cfg, data, weighting: str, seed: int, accelerator, resume: bool) -> dict[str, Any]:
    from rewardkit_dreamprm import DreamPRMConfig, DreamPRMTrainer, best_of_n_eval

    tcfg = dict(cfg.get("trainer", {}))
    tcfg.update(weighting=weighting, seed=seed)
    name = f"{weighting}_s{seed}"
    out = os.path.join(cfg["output_dir"], name)
    tcfg["output_dir"] = out
    config = DreamPRMConfig.from_dict(tcfg)
    prm = load_model(cfg, config.variant, seed)

    def show(rec):
        if is_main():
            w = " ".join(f"{k}={v:.3f}" for k, v in rec.get("weights", {}).items())
            ml = f" meta_loss={rec['meta_loss']:.4f}" if "meta_loss" in rec else ""
            if "lower_loss" in rec and rec["step"] % config.logging_steps == 0:
                print(f"[{name}] step {rec['step']:5d} lower_loss={rec['lower_loss']:.4f}{ml} {w}", flush=True)

    tr = DreamPRMTrainer(prm, data["train"], data["meta"], config, accelerator=accelerator, callbacks=[show])
    ckpt = None
    if resume and os.path.isdir(out):
        cks = sorted((d for d in os.listdir(out) if d.startswith("checkpoint-")), key=lambda d: int(d.split("-")[1]))
        ckpt = os.path.join(out, cks[-1]) if cks else None
    t0 = time.time()
    tr.train(resume_from=ckpt)
    secs = time.time() - t0
    res: dict[str, Any] = {"run": name, "weights": tr.weight_table(), "train_seconds": secs,
                           "lower_ms": 1e3 * sum(tr.timings["lower"]) / max(1, len(tr.timings["lower"])),
                           "upper_ms": 1e3 * sum(tr.timings["upper"]) / max(1, len(tr.timings["upper"]))}
    if data["eval"]:
        bon = best_of_n_eval(prm, data["eval"], batch_size=64)
        res.update(bon_accuracy=bon["accuracy"], bon_by_domain=bon["by_domain"], oracle=bon["oracle"],
                   random_pick=bon["mean_candidate"],
                   margin_by_domain={d: round(v, 3) for d, v in bon["margin_by_domain"].items()})
    if is_main():
        accelerator.unwrap_model(tr.model).save_pretrained(os.path.join(cfg["output_dir"], f"prm_{name}"))
        with open(os.path.join(cfg["output_dir"], f"history_{name}.json"), "w") as fh:
            json.dump(tr.history, fh)
    res["history"] = tr.history
    return res


def plot(results: list[dict[str, Any]], corrupted, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if r["run"].startswith(("domain", "instance"))]
    if not runs:
        return
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, r in zip(axes[0], runs):
        recs = [h for h in r["history"] if "upper_step" in h]
        for d in sorted(recs[0]["weights"]) if recs else []:
            style = "--" if d in corrupted else "-"
            ax.plot([h["step"] for h in recs], [h["weights"][d] for h in recs], style,
                    label=d + (" (corrupted)" if d in corrupted else ""))
        ax.set_xlabel("lower step")
        ax.set_ylabel("domain weight")
        ax.set_title(f"DreamPRM domain weights ({r['run']})")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    from rewardkit.recipes import end_run, load_example_config

    cfg = load_example_config("examples/configs/dreamprm_bilevel.yaml", argv, description=__doc__,
                              aliases={"max_steps": "trainer.max_steps", "resume": "resume"})
    resume = bool(cfg.pop("resume", False))  # continue each run from its last checkpoint
    from accelerate import Accelerator

    accelerator = Accelerator()
    os.makedirs(cfg["output_dir"], exist_ok=True)
    data = build_data(cfg)
    if is_main() and data["eval"]:
        with open(os.path.join(cfg["output_dir"], "eval.jsonl"), "w") as fh:
            for p in data["eval"]:
                fh.write(json.dumps({"question": p["question"], "solution": p["answer"], "domain": p["domain"],
                                     "responses": [c.response for c in p["candidates"]]}) + "\n")
    weighting = cfg.get("trainer", {}).get("weighting", "domain")
    runs = [weighting] + (["none"] if cfg.get("compare_uniform", True) and weighting != "none" else [])
    results = [run_one(cfg, data, w, s, accelerator, resume) for s in cfg.get("seeds", [0]) for w in runs]
    if is_main():
        plot(results, tuple(data["corrupted"]), os.path.join(cfg["output_dir"], "domain_weights.png"))
        summary = [{k: v for k, v in r.items() if k != "history"} for r in results]
        with open(os.path.join(cfg["output_dir"], "summary.json"), "w") as fh:
            json.dump({"corrupted": list(data["corrupted"]), "runs": summary}, fh, indent=2)
        print("\nrun            corrupted-domain weight   clean weights (min..max)   BoN acc   (oracle / random pick)")
        for r in summary:
            w = r["weights"]
            bad = [w[d] for d in data["corrupted"] if d in w]
            good = [v for d, v in w.items() if d not in data["corrupted"]]
            print(f"{r['run']:14s} {', '.join(f'{x:.3f}' for x in bad) or '-':>24s}   "
                  f"{(min(good) if good else 0):.3f}..{(max(good) if good else 0):.3f}"
                  f"{'':14s}{r.get('bon_accuracy', float('nan')):.3f}   "
                  f"({r.get('oracle', float('nan')):.3f} / {r.get('random_pick', float('nan')):.3f})")
            print(f"{'':14s} good-bad score margin by domain: {r.get('margin_by_domain')}")
            print(f"{'':14s} BoN by domain: {r.get('bon_by_domain')}  lower {r['lower_ms']:.0f} ms, "
                  f"upper {r['upper_ms']:.0f} ms, {r['train_seconds']:.0f} s")
    end_run(accelerator)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
