"""Offline data selection (Eq. 11) and Best-of-N with a ReasonFlux PRM, driven by a YAML config.

    python examples/train_reasonflux_prm.py          # first: trains runs/reasonflux_prm/prm
    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/reasonflux_select.py --config examples/configs/reasonflux_select.yaml

1. Selection: every trajectory–response pair of the pool (default: the toy set's held-out
   questions, which the PRM never saw) is scored by ``reasonflux.prm`` (mean step score +
   alpha × trajectory score), the top k are kept and written to ``selected.jsonl``, and the share
   of correct trajectories among them is compared with the pool's (what random selection gets).
2. Best-of-N: for each question, its candidate responses are ranked by the same reward; accuracy
   is reported next to majority vote, random choice and the oracle (the ``rewardkit bon`` API).

The same runs from the command line: ``rewardkit select`` and ``rewardkit bon``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def main() -> None:
    from rewardkit.recipes import load_example_config

    cfg = load_example_config("examples/configs/reasonflux_select.yaml", description=__doc__,
                              aliases={"prm": "prm"})
    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg["torch_threads"]))
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return

    from rewardkit_reasonflux.select import best_of_n, select_top_k
    from rewardkit_reasonflux.toy import load_toy_records

    from rewardkit.data import load_records
    from rewardkit.testing import tiny_model_dir

    prm = cfg.get("prm", "tiny")
    if prm == "tiny":
        prm = str(tiny_model_dir("prm"))
    elif not Path(prm).exists():
        raise SystemExit(f"no PRM at {prm}: run examples/train_reasonflux_prm.py first, or set prm: tiny")
    out = Path(cfg.get("output_dir", "runs/reasonflux_select"))
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("data", "toy") == "toy":
        records = load_toy_records()
        questions = list(dict.fromkeys(r["question"] for r in records))
        held = set(questions[-max(1, int(len(questions) * cfg.get("held_out_fraction", 0.25))):])
        pool = [r for r in records if r["question"] in held]
    else:
        pool = load_records(cfg["data"])
    params = {"model": prm, **cfg.get("reward_params", {})}
    selected, summary = select_top_k(pool, "reasonflux.prm", cfg.get("top_k", 30), params=params, progress=True)
    with open(out / "selected.jsonl", "w", encoding="utf-8") as fh:
        for r in selected:
            fh.write(json.dumps(r) + "\n")
    report = {"selection": {k: v for k, v in summary.items() if not k.startswith("quantiles")},
              "quantiles_all": {str(q): v for q, v in summary["quantiles_all"].items()}}
    if all("trajectory_target" in r for r in pool):
        base = sum(r["trajectory_target"] for r in pool) / len(pool)
        kept = sum(r["trajectory_target"] for r in selected) / max(len(selected), 1)
        report["selection"].update({"correct_share_pool": base, "correct_share_selected": kept})
        print(f"selection: kept {len(selected)} of {len(pool)}; correct trajectories {kept:.3f} among the "
              f"selected vs {base:.3f} in the pool (random selection)")
    if cfg.get("bon", True) and all("solution" in r for r in pool):
        import random

        cands = [{"question": r["question"], "solution": r["solution"],
                  "response": "<think>" + "\n\n".join(r["thinking"]) + "</think>" + r["response"]} for r in pool]
        random.Random(cfg.get("seed", 0)).shuffle(cands)  # the toy set lists the correct candidate first
        bon = best_of_n(cands, "reasonflux.prm", params=params, progress=True)
        report["best_of_n"] = {str(n): v for n, v in bon["n"].items()}
        for n, v in bon["n"].items():
            print(f"best-of-{n}: reasonflux.prm {v['bon']:.3f} | majority {v['majority']:.3f} | "
                  f"random {v['random']:.3f} | oracle {v['oracle']:.3f} ({v['questions']} questions)")
    if cfg.get("teacher", False) and cfg.get("data", "toy") == "toy":
        # the labelling signal itself (reasonflux.step with the toy set's rule-based judge) as the ranker:
        # what a PRM that had learned its targets perfectly would do at the step level
        from rewardkit_reasonflux.judge import CallableBackend
        from rewardkit_reasonflux.toy import arithmetic_judge

        teacher = {"judge": CallableBackend(arithmetic_judge, name="arithmetic_judge"), "bank_size": 0}
        t_sel, _ = select_top_k(pool, "reasonflux.step", cfg.get("top_k", 30), params=teacher, batch_size=len(pool))
        t_share = sum(r["trajectory_target"] for r in t_sel) / max(len(t_sel), 1)
        t_bon = best_of_n(cands, "reasonflux.step", params=teacher, batch_size=len(cands))
        report["teacher"] = {"correct_share_selected": t_share, "best_of_n": {str(n): v for n, v in t_bon["n"].items()}}
        print(f"teacher (reasonflux.step with the rule judge): correct trajectories {t_share:.3f} among the selected")
        for n, v in t_bon["n"].items():
            print(f"teacher best-of-{n}: {v['bon']:.3f} | majority {v['majority']:.3f} | random {v['random']:.3f}")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'selected.jsonl'} and {out / 'report.json'}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
