"""Offline data selection (Eq. 11) and Best-of-N with a ReasonFlux PRM.

    python examples/train_reasonflux_prm.py --config examples/configs/reasonflux_train_prm.yaml  # first
    python examples/reasonflux_select.py --config examples/configs/reasonflux_select.yaml

1. Selection: every trajectory–response pair of the pool (default: the toy set's held-out
   questions, which the PRM never saw) is scored by ``reasonflux.prm`` (mean step score +
   alpha × trajectory score), the top k are kept and written to ``selected.jsonl``, and the share
   of correct trajectories among them is compared with the pool's (what random selection gets).
2. Best-of-N: for each question, its candidate responses are ranked by the same reward; accuracy
   is reported next to majority vote, random choice and the oracle (the ``rewardkit bon`` API).
3. ``teacher``: the same with the labelling signal itself (``reasonflux.step`` with the toy rule judge).

The same runs from the command line: ``rewardkit select`` and ``rewardkit bon``. Writes
``selected.jsonl`` and ``report.json`` into ``output_dir``.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class SelectArguments:
    prm: str = field(default="runs/reasonflux_prm/prm", metadata={"help": "a trained PRM, or 'tiny' (untrained)"})
    output_dir: str = "runs/reasonflux_select"
    data: str = field(default="toy", metadata={"help": "'toy' (held-out questions) or a JSONL of pairs"})
    held_out_fraction: float = 0.25
    top_k: int = field(default=24, metadata={"help": "pairs kept (the toy pool has 4 per question)"})
    reward_params: dict | str | None = field(default=None, metadata={"help": "reasonflux.prm parameters (YAML)"})
    bon: bool = field(default=True, metadata={"help": "also run Best-of-N (needs a solution per row)"})
    teacher: bool = field(default=False, metadata={"help": "also rank by reasonflux.step with the toy rule judge"})
    seed: int = 0
    torch_threads: int = 1

    def __post_init__(self) -> None:
        params = yaml.safe_load(self.reward_params) if isinstance(self.reward_params, str) else self.reward_params
        if not isinstance(params, dict | None):
            raise ValueError(f"reward_params must be a mapping, got {params!r}")
        self.reward_params = params or {}


def rank(name: str, params: dict[str, Any], pool: list[dict], cands: list[dict] | None, top_k: int,
         batch_size: int = 32) -> dict[str, Any]:
    from rewardkit_reasonflux.select import best_of_n, select_top_k

    selected, summary = select_top_k(pool, name, top_k, params=params, batch_size=batch_size, progress=True)
    report: dict[str, Any] = {"selected": selected, "selection": summary}
    if all("trajectory_target" in r for r in pool):
        report["selection"]["correct_share_pool"] = sum(r["trajectory_target"] for r in pool) / len(pool)
        report["selection"]["correct_share_selected"] = (sum(r["trajectory_target"] for r in selected)
                                                         / max(len(selected), 1))
    if cands is not None:
        bon = best_of_n(cands, name, params=params, batch_size=batch_size, progress=True)
        report["best_of_n"] = {str(n): v for n, v in bon["n"].items()}
    print(json.dumps({name: {k: v for k, v in report.items() if k != "selected"}}, indent=2))
    return report


def main(args: SelectArguments) -> dict[str, Any]:
    import torch
    from rewardkit_reasonflux.select import pair_completion
    from rewardkit_reasonflux.toy import held_out_split, load_toy_records

    from rewardkit.data import load_records
    from rewardkit.testing import tiny_model_dir

    torch.set_num_threads(args.torch_threads)
    prm = str(tiny_model_dir("prm")) if args.prm == "tiny" else args.prm
    if not Path(prm).exists():
        raise SystemExit(f"no PRM at {prm}: run examples/train_reasonflux_prm.py first, or pass --prm tiny")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool = held_out_split(load_toy_records(), args.held_out_fraction)[1] if args.data == "toy" else load_records(args.data)
    cands = None
    if args.bon and all("solution" in r for r in pool):
        cands = [{"question": r["question"], "solution": r["solution"],
                  "response": pair_completion(r, "thinking", "response")} for r in pool]
        random.Random(args.seed).shuffle(cands)  # the toy set lists the correct candidate first
    report = {"reasonflux.prm": rank("reasonflux.prm", {"model": prm, **args.reward_params}, pool, cands, args.top_k)}
    if args.teacher and args.data == "toy":
        from rewardkit_reasonflux.judge import CallableBackend
        from rewardkit_reasonflux.toy import arithmetic_judge

        teacher = {"judge": CallableBackend(arithmetic_judge, name="arithmetic_judge"), "bank_size": 0}
        report["teacher"] = rank("reasonflux.step", teacher, pool, cands, args.top_k, batch_size=len(pool))
    with open(out / "selected.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in report["reasonflux.prm"].pop("selected"))
    report.get("teacher", {}).pop("selected", None)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'selected.jsonl'} and {out / 'report.json'}")
    return report


if __name__ == "__main__":
    from trl import TrlParser

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(*TrlParser((SelectArguments,)).parse_args_and_config())
