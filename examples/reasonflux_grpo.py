"""GRPO with ReasonFlux-PRM reward mixing (paper Eq. 12): r = (1 - beta) * rule + beta * PRM.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/reasonflux_grpo.py --config examples/configs/reasonflux_grpo.yaml

The policy is the offline tiny Llama (warm-started by a short SFT on the bundled arithmetic
problems so it writes boxed answers), the rule reward is ``math.accuracy`` and the PRM reward is
``reasonflux.prm`` (``mode: official`` scores the whole response as one step at the last token,
as the released verl worker does; ``mode: paper`` uses Eq. 11). ``prm: tiny`` uses the untrained
tiny PRM; point it at ``runs/reasonflux_prm/prm`` (``examples/train_reasonflux_prm.py``) or a
real checkpoint. Extra rewards (e.g. ``reasonflux.alignment``) can be added under ``extra_rewards``.
Writes ``metrics.jsonl``, ``summary.json`` and ``rewards.png`` into ``output_dir``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def warm_start(model: str, cfg: dict[str, Any], out: Path, state, use_cpu: bool) -> str:
    """A short SFT on boxed answers so the rule reward is not always 0 for the tiny model."""
    from datasets import Dataset

    from rewardkit.data import load_arithmetic, to_prompt
    from rewardkit.recipes import sft_warm_start

    ws = cfg.get("warmstart", {})
    rows = load_arithmetic()[: cfg.get("n_train", 256)]
    data = Dataset.from_list([{"prompt": to_prompt(r), "completion": f" \\boxed{{{r['solution']}}}"} for r in rows])
    return sft_warm_start(model, data, out / "warmstart", steps=ws.get("steps", 40),
                          learning_rate=ws.get("learning_rate", 3e-3), batch_size=ws.get("batch_size", 16),
                          seed=cfg.get("seed", 0), use_cpu=use_cpu, state=state)


def main() -> None:
    from datasets import Dataset
    from rewardkit_reasonflux.mixing import grpo_mix
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit import compose
    from rewardkit.data import load_arithmetic, to_prompt
    from rewardkit.recipes import end_run, launch_state, load_example_config, resolve_model, write_run_report
    from rewardkit.testing import tiny_model_dir

    cfg = load_example_config("examples/configs/reasonflux_grpo.yaml", description=__doc__,
                              aliases={"max_steps": "grpo.max_steps", "prm": "prm"})
    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg["torch_threads"]))
    state, use_cpu = launch_state(cfg.get("grpo", {}).get("use_cpu"))
    out = Path(cfg.get("output_dir", "runs/reasonflux_grpo"))
    out.mkdir(parents=True, exist_ok=True)
    model, tiny = resolve_model(cfg.get("model"), state, seed=cfg.get("seed", 0))
    if cfg.get("warmstart", {}).get("steps", 40 if tiny else 0) > 0:
        model = warm_start(model, cfg, out, state, use_cpu)
    prm = cfg.get("prm", "tiny")
    if prm == "tiny":
        with state.main_process_first():
            prm = str(tiny_model_dir("prm"))
    mix = cfg.get("mix", {})
    spec = grpo_mix(prm, beta=mix.get("beta", 0.75), mode=mix.get("mode", "official"),
                    prm_params=mix.get("prm_params"))
    spec.update(cfg.get("extra_rewards") or {})
    rewards = compose(spec)
    rows = load_arithmetic()[: cfg.get("n_train", 256)]
    prompts = Dataset.from_list([{"prompt": to_prompt(r), "solution": r["solution"]} for r in rows])
    grpo = dict(cfg.get("grpo", {}))
    grpo.setdefault("bf16", False)
    grpo["use_cpu"] = use_cpu
    config = GRPOConfig(output_dir=str(out), report_to="none", seed=cfg.get("seed", 0), **rewards.grpo_kwargs(),
                        **grpo)
    trainer = GRPOTrainer(model=model, reward_funcs=rewards.funcs, args=config, train_dataset=prompts)
    trainer.train()
    if state.is_main_process:
        summary = write_run_report(trainer.state.log_history, rewards.names, out, weights=rewards.weights,
                                   title="ReasonFlux-PRM reward mixing during GRPO", total_label="mixed (Eq. 12)")
        print(json.dumps(summary, indent=2))
    end_run(state)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
