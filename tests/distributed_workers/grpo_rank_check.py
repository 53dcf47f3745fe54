"""Worker launched by tests/test_distributed_*.py with accelerate launch / torchrun (one copy per rank).

``--probe``: report the launch (world size, distributed type) and exit, without TRL.
Otherwise: a short GRPO run with
  * a composed rewardkit outcome reward (format.boxed + a text-length reward),
  * a rewardkit PRM reward (core ``PRMReward`` on the tiny token-classification PRM); the core
    scorer prepares its model itself on first use (a sharded DeepSpeed engine under ZeRO-3) and
    keeps the ranks' forward counts in step,
  * ``RewardSetModel`` as a TRL model reward,
  * the core ``prm.process_advantage`` hook (per-token advantages from the PRM's step scores) and a
    recording hook holding cross-rank state (a reward baseline from gathered rewards),
and writes what this rank saw to ``<out>/rank<r>.json`` for the test to compare across ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def probe(out: str, use_cpu: bool) -> None:
    from accelerate import PartialState

    from rewardkit.trl import LaunchError, check_world_size

    # what TrainingArguments(use_cpu=...) asks of accelerate, without importing transformers
    state = PartialState(cpu=use_cpu)
    try:
        check_world_size()
        error = None
    except LaunchError as exc:
        error = str(exc)
    with open(os.path.join(out, f"probe{state.process_index}.{os.getpid()}.json"), "w") as fh:
        json.dump({"world": state.num_processes, "rank": state.process_index,
                   "type": str(state.distributed_type), "backend": state.backend, "error": error}, fh)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--no-prm", action="store_true")
    ap.add_argument("--use-cpu", type=int, default=1, help="--probe: the use_cpu of the training args")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.probe:
        probe(args.out, bool(args.use_cpu))
        return

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    from trl import GRPOTrainer

    from rewardkit import Reward, compose, get_hook
    from rewardkit.prm import PRMReward, TaggedScorer
    from rewardkit.reducers import reduce_steps
    from rewardkit.testing import tiny_grpo_config, tiny_model_dir, tiny_prompt_dataset
    from rewardkit.trl import (
        RewardSetModel,
        TrainerHook,
        build_trainer,
        check_world_size,
        end_run,
        zero_stage,
    )

    class TextLen(Reward):
        def score(self, sample):
            return min(len(sample.text), 64) / 64

    class RankPRM(PRMReward):
        """Core PRMReward; remembers its values and takes part in the lockstep even with no rows.

        On its second call, rank 1 finds no steps in any completion (``starve``), so it has nothing
        to score while rank 0 runs a forward pass: without the core scorer's lockstep, ZeRO-3 would
        hang here.
        """

        n_calls = 0
        starve = False

        def split(self, text):
            return [] if self.starve else super().split(text)

        def score_batch(self, batch):
            self.starve = int(os.environ.get("RANK", "0")) == 1 and self.n_calls == 1
            self.n_calls += 1
            values = super().score_batch(batch)
            self.last_values = values
            return values

    class Recorder(TrainerHook):
        """Records local rows; keeps a baseline from *gathered* rewards (must agree on every rank)."""

        name = "recorder"

        def __init__(self, phase):
            self.phase = phase
            self.name = f"recorder_{phase}"
            self.rows = []
            self.baseline = 0.0
            self.updates = 0

        def after_rollout(self, trainer, inputs, output):
            adv = output["advantages"].detach().float().cpu()
            mask = output["completion_mask"].detach().cpu()
            funcs = trainer.reward_funcs
            prm = next((f for f in funcs if isinstance(f, PRMReward)), None)
            composed = [f for f in funcs if isinstance(f, Reward) and not isinstance(f, PRMReward)]
            for i, inp in enumerate(inputs):
                row = {"prompt": inp["prompt"] if isinstance(inp["prompt"], str) else json.dumps(inp["prompt"]),
                       "adv0": float(adv[i, 0]) if adv.dim() == 2 else float(adv[i]),
                       "adv_dim": adv.dim(), "len": int(mask[i].sum())}
                for f in composed:
                    row[f.name] = f.last_values[i]
                if prm is not None:
                    s = prm.last_step_scores[i]
                    row["prm"] = prm.last_values[i]
                    row["prm_steps"] = None if s is None else list(s.scores)
                    row["prm_reduced"] = None if s is None or not s.scores else reduce_steps(s.scores, "min")
                    row["prm_starved"] = prm.starve
                self.rows.append(row)
            if self.phase == "before":
                local = torch.tensor([r["textlen"] for r in self.rows[-len(inputs):]],
                                     dtype=torch.float32, device=adv.device)
                glob = trainer.accelerator.gather(local.to(trainer.accelerator.device)).cpu()
                self.baseline = 0.9 * self.baseline + 0.1 * float(glob.mean())
                self.updates += 1
            return output

        def state_dict(self):
            return {"baseline": self.baseline, "updates": self.updates}

    class Remember(Reward):
        def __init__(self, inner, **kw):
            super().__init__(**kw)
            self.inner = inner

        def score_batch(self, batch):
            values = self.inner(batch.prompts, batch.completions, batch.completion_ids, **batch.columns)
            self.last_values = values
            return values

    model_path = str(tiny_model_dir("causal_lm"))
    prm_path = str(tiny_model_dir("prm"))
    tok = AutoTokenizer.from_pretrained(model_path)
    ds = tiny_prompt_dataset(12)
    rs = compose({"format.boxed": 0.5})
    outcome = Remember(rs.rewards[0], name="boxed")
    textlen = Remember(TextLen(name="inner_len"), name="textlen")
    funcs = [outcome, textlen]
    n_funcs = 3 if args.no_prm else 4
    # the config first: under ZeRO-3 it switches on zero.Init, so the PRM below loads sharded
    cfg = tiny_grpo_config(args.out, max_steps=args.steps, per_device_train_batch_size=6, num_generations=4,
                           reward_weights=[0.5, 1.0] + ([] if args.no_prm else [1.0]) + [0.0],
                           scale_rewards="none", max_completion_length=12)
    assert len(cfg.reward_weights) == n_funcs
    hooks = [Recorder("before")]
    prm = None
    if not args.no_prm:
        prm_model = AutoModelForTokenClassification.from_pretrained(prm_path)
        scorer = TaggedScorer(prm_model, AutoTokenizer.from_pretrained(prm_path), head="token_cls", batch_size=64)
        prm = RankPRM(scorer, reducer="min", splitter="line", name="prm")
        funcs.append(prm)
        hooks.append(get_hook("prm.process_advantage"))
    funcs.append(RewardSetModel([TextLen(name="len_model")], tok, rows=list(ds), name="rewardset_model"))
    # weight 0: logged only; its logits must equal textlen's values on every row
    hooks.append(Recorder("after"))
    trainer = build_trainer(GRPOTrainer, hooks=hooks, model=model_path, reward_funcs=funcs, args=cfg,
                            train_dataset=ds, processing_class=tok,
                            reward_processing_classes=[None] * (len(funcs) - 1) + [tok])
    check_world_size(trainer)
    info = {"zero_stage": zero_stage(trainer=trainer)}
    trainer.train()
    if prm is not None:
        placed = scorer._lazy_model  # prepared by the scorer on its first call
        info["prm_engine"] = type(placed).__name__
        full = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in placed.parameters())
        local = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in placed.parameters())
        info["prm_params_full"], info["prm_params_local"] = int(full), int(local)
    acc = trainer.accelerator
    engine = getattr(trainer, "model_wrapped", None)
    opt = getattr(engine, "optimizer", None) if type(engine).__name__ == "DeepSpeedEngine" else trainer.optimizer
    if prm is not None:
        info["prm_idle_forwards"] = scorer.idle_forwards
    info["optimizer"] = [type(opt).__name__, type(getattr(opt, "optimizer", None)).__name__]
    logs = [h for h in trainer.state.log_history if "reward" in h]
    result = {
        "rank": acc.process_index, "world": acc.num_processes, "type": str(acc.distributed_type), **info,
        "rows_before": hooks[0].rows, "rows_after": hooks[-1].rows,
        "hook_states": {h.name: h.state_dict() for h in hooks},
        "logs": logs,
    }
    with open(os.path.join(args.out, f"rank{acc.process_index}.json"), "w") as fh:
        json.dump(result, fh)
    end_run(acc)


if __name__ == "__main__":
    sys.exit(main())
