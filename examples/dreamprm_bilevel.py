"""DreamPRM bi-level training: learn domain weights and a reweighted PRM, compare with uniform weights.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/dreamprm_bilevel.py --config examples/configs/dreamprm_bilevel.yaml

Arguments are this script's (below) and every ``DreamPRMConfig`` field (with ``variant: "1.5"`` the
fields left unset take the 1.5 preset), from the YAML file or flags as in TRL's scripts:
``--max_steps 8``, ``--seeds 0 1``, ``--resume``. Writes into ``output_dir``: ``summary.json``
(weights and Best-of-N of every run), ``history_<run>.json``, ``domain_weights.png``, ``prm_<run>/``
(loadable by ``dreamprm.prm``), ``eval.jsonl`` (the Best-of-N pool for ``dreamprm_bon.py``) and
checkpoints every ``save_steps``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import yaml


@dataclass
class BilevelArguments:
    model: str = field(default="tiny", metadata={"help": "'tiny' (the offline tiny Llama), a Hub id or a path"})
    compare_uniform: bool = field(default=True, metadata={"help": "also train with uniform weights"})
    seeds: list[int] | None = field(default=None, metadata={"help": "model seeds, one run each (default: seed)"})
    resume: bool = field(default=False, metadata={"help": "continue every run from its last checkpoint"})
    toy: dict | str | None = field(default=None, metadata={"help": "make_toy arguments (YAML mapping)"})
    data_seed: int = field(default=0, metadata={"help": "the toy's draw"})
    train_data: str | None = field(default=None, metadata={"help": "step-labelled file instead of the toy"})
    train_format: str = field(default="v1", metadata={"help": "v1 | 1.5 | generic"})
    meta_data: str | None = None
    meta_format: str = "v1"

    def __post_init__(self) -> None:
        self.toy = yaml.safe_load(self.toy) if isinstance(self.toy, str) else dict(self.toy or {})


def parse(argv: list[str] | None = None):
    from rewardkit_dreamprm import DreamPRMConfig, bilevel_kwargs
    from trl import TrlParser

    args, config = TrlParser((BilevelArguments, DreamPRMConfig)).parse_args_and_config(argv)
    if config.variant == "1.5":  # again, with 1.5's preset under what the file and the flags set
        parser = TrlParser((BilevelArguments, DreamPRMConfig))
        parser.set_defaults(**bilevel_kwargs("1.5"))
        args, config = parser.parse_args_and_config(argv)
    return args, config


def build_data(args: BilevelArguments) -> dict[str, Any]:
    from rewardkit_dreamprm import data as D
    from rewardkit_dreamprm import make_toy

    if args.train_data is None:
        return make_toy(**args.toy, seed=args.data_seed)
    loaders = {"v1": (D.load_v1_train, D.load_v1_meta), "1.5": (D.load_v15_train, D.load_v15_meta),
               "generic": (D.load_generic, D.load_meta_generic)}
    return {"train": loaders[args.train_format][0](args.train_data), "eval": [], "corrupted": (),
            "meta": loaders[args.meta_format][1](args.meta_data)}


def is_main() -> bool:
    """Rank 0 by torch.distributed (accelerate reports one process for DeepSpeed on CPU)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def run_one(args: BilevelArguments, config, data: dict[str, Any], accelerator, out: str) -> dict[str, Any]:
    import torch
    from rewardkit_dreamprm import DreamPRMTrainer, best_of_n_eval, load_prm

    from rewardkit.testing import tiny_model_dir

    name = f"{config.weighting}_s{config.seed}"
    torch.manual_seed(config.seed)
    prm = load_prm(str(tiny_model_dir("causal_lm")) if args.model == "tiny" else args.model, variant=config.variant)
    show = (lambda r: print(f"[{name}] {json.dumps(r)}", flush=True)) if is_main() else (lambda r: None)
    trainer = DreamPRMTrainer(prm, data["train"], data["meta"], config, accelerator=accelerator, callbacks=[show])
    done = sorted((d for d in os.listdir(config.output_dir) if d.startswith("checkpoint-")),
                  key=lambda d: int(d.split("-")[1])) if args.resume and os.path.isdir(config.output_dir) else []
    t0 = time.time()
    trainer.train(resume_from=os.path.join(config.output_dir, done[-1]) if done else None)
    res: dict[str, Any] = {"run": name, "weights": trainer.weight_table(), "train_seconds": time.time() - t0,
                           **{f"{k}_ms": 1e3 * sum(v) / max(1, len(v)) for k, v in trainer.timings.items()}}
    if data["eval"]:
        bon = best_of_n_eval(prm, data["eval"], batch_size=64)
        res.update(bon_accuracy=bon["accuracy"], bon_by_domain=bon["by_domain"], oracle=bon["oracle"],
                   random_pick=bon["mean_candidate"],
                   margin_by_domain={d: round(v, 3) for d, v in bon["margin_by_domain"].items()})
    if is_main():
        accelerator.unwrap_model(trainer.model).save_pretrained(os.path.join(out, f"prm_{name}"))
        with open(os.path.join(out, f"history_{name}.json"), "w") as fh:
            json.dump(trainer.history, fh)
    return res | {"history": trainer.history}


def plot_weights(results: list[dict[str, Any]], corrupted: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if r["run"].startswith(("domain", "instance"))]
    fig, axes = plt.subplots(1, max(1, len(runs)), figsize=(6 * max(1, len(runs)), 4), squeeze=False)
    for ax, r in zip(axes[0], runs):
        recs = [h for h in r["history"] if "upper_step" in h]
        for d in sorted(recs[0]["weights"]) if recs else []:
            ax.plot([h["step"] for h in recs], [h["weights"][d] for h in recs], "--" if d in corrupted else "-",
                    label=d + (" (corrupted)" if d in corrupted else ""))
        ax.set(xlabel="lower step", ylabel="domain weight", title=f"DreamPRM domain weights ({r['run']})")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(args: BilevelArguments, config) -> dict[str, Any]:
    from accelerate import Accelerator

    from rewardkit.trl import end_run

    accelerator = Accelerator()
    out = config.output_dir or "runs/dreamprm_bilevel"
    os.makedirs(out, exist_ok=True)
    data = build_data(args)
    if is_main() and data["eval"]:
        with open(os.path.join(out, "eval.jsonl"), "w") as fh:
            for p in data["eval"]:
                fh.write(json.dumps({"question": p["question"], "solution": p["answer"], "domain": p["domain"],
                                     "responses": [c.response for c in p["candidates"]]}) + "\n")
    weightings = [config.weighting] + (["none"] if args.compare_uniform and config.weighting != "none" else [])
    results = [run_one(args, replace(config, weighting=w, seed=s, output_dir=os.path.join(out, f"{w}_s{s}")),
                       data, accelerator, out) for s in (args.seeds or [config.seed]) for w in weightings]
    summary = {"corrupted": list(data["corrupted"]), "runs": [{k: v for k, v in r.items() if k != "history"}
                                                              for r in results]}
    if is_main():
        plot_weights(results, summary["corrupted"], os.path.join(out, "domain_weights.png"))
        with open(os.path.join(out, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
        for r in summary["runs"]:
            print(f"{r['run']}: weights {({d: round(w, 3) for d, w in r['weights'].items()})}, Best-of-N "
                  f"{r.get('bon_accuracy', float('nan')):.3f} (oracle {r.get('oracle', float('nan')):.3f}, random "
                  f"{r.get('random_pick', float('nan')):.3f}), by domain {r.get('bon_by_domain')}, good-bad "
                  f"margin {r.get('margin_by_domain')}")
    end_run(accelerator)
    return summary


if __name__ == "__main__":
    main(*parse())
