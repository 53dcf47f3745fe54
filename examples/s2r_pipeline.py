"""S²R end to end on the bundled arithmetic set: Stage 0 → Stage 1 SFT → Stage 2 RL.

1. (tiny model only) warm-up SFT on plain solutions, so the random tiny model produces boxed
   answers with a mix of right and wrong ones — the raw material of stage 0;
2. Stage 0: K samples per question from that policy, confirmative verifications from a judge
   served over an OpenAI-compatible HTTP endpoint (default: the offline scripted arithmetic
   teacher on a loopback port, which flips 10% of its verdicts; give ``--stage0.judge URL`` for a
   real LLM), agreement filter, trajectories per the difficulty schedule;
3. Stage 1: SFT with S²R's action mask (``S2RSFTCollator``);
4. Stage 2: GRPOTrainer with ``s2r.process`` + ``s2r.process_advantage`` (process level, default)
   or ``s2r.outcome`` + ``s2r.outcome_rloo`` (``--stage2.level outcome``);
5. greedy evaluation on held-out questions after each stage: final-answer accuracy, verification
   accuracy, error recall, attempts per answer, incorrect→correct / correct→incorrect rates.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \\
        examples/s2r_pipeline.py --config examples/configs/s2r_pipeline.yaml [--stage2.max_steps 10 ...]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def set_stop_tokens(path: str) -> None:
    """Generation must stop at the chat template's end of turn (spec pitfall 8)."""
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(path)
    gc = GenerationConfig.from_pretrained(path)
    ids = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    gc.eos_token_id = sorted({i for i in ids if i is not None and i >= 0})
    gc.save_pretrained(path)


def sft(model_path: str, rows: list[dict], out: str, cfg: dict, collator=None) -> str:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    args = SFTConfig(output_dir=out, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                     num_train_epochs=cfg["epochs"], learning_rate=float(cfg["learning_rate"]),
                     per_device_train_batch_size=cfg["batch_size"], gradient_checkpointing=False,
                     logging_steps=10, lr_scheduler_type="cosine", warmup_steps=5, disable_tqdm=True,
                     seed=cfg.get("seed", 0))
    trainer = SFTTrainer(model=model_path, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         data_collator=collator)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if losses:
        print(f"  SFT loss {losses[0]:.3f} -> {losses[-1]:.3f} over {trainer.state.global_step} steps")
    else:
        print(f"  SFT: {trainer.state.global_step} steps, fewer than logging_steps (no loss logged)")
    trainer.save_model(out)
    tok.save_pretrained(out)
    set_stop_tokens(out)
    return out


def evaluate(model_path: str, rows: list[dict], cfg: dict, label: str) -> dict:
    from rewardkit_s2r.backends import TransformersBackend
    from rewardkit_s2r.grading import Grader
    from rewardkit_s2r.parse import DEFAULT_MARKERS
    from rewardkit_s2r.rewards import score_trajectory, trajectory_metrics
    from rewardkit_s2r.stage0 import policy_prompt

    backend = TransformersBackend(model_path, batch_size=32)
    outs = backend.generate([policy_prompt(r["question"]) for r in rows], 1, temperature=0.0,
                            max_new_tokens=cfg["eval"]["max_new_tokens"])
    grader = Grader()
    scored = [score_trajectory(o[0], r["solution"], grader, DEFAULT_MARKERS) for o, r in zip(outs, rows)]
    m = trajectory_metrics(scored)
    m["any_verification"] = sum(bool(s.trajectory.verifications) for s in scored) / len(scored)
    print(f"[{label}] final-answer acc {m['final_accuracy']:.3f}  verification acc "
          f"{m.get('verification_accuracy', float('nan')):.3f}  error recall {m.get('error_recall', float('nan')):.3f}"
          f"  attempts {m['avg_attempts']:.2f}  i->c {m['incorrect_to_correct']:.3f}  c->i {m['correct_to_incorrect']:.3f}")
    print(f"  sample output: {outs[0][0][:300]!r}")
    return m


def stage0(policy_path: str, rows: list[dict], cfg: dict, out_dir: Path) -> list[dict]:
    from rewardkit_s2r.backends import OpenAIBackend, TransformersBackend, serve
    from rewardkit_s2r.stage0 import ScriptedArithmeticJudge, Stage0Config, build_trajectories

    c = cfg["stage0"]
    server = None
    judge_url = c["judge"]
    if judge_url == "scripted-arithmetic":
        teacher = ScriptedArithmeticJudge({r["question"]: r["solution"] for r in rows},
                                          error_rate=float(c["judge_error_rate"]), seed=cfg["seed"])
        server, judge_url = serve(teacher)
        print(f"  judge: scripted arithmetic teacher served at {judge_url} (error rate {c['judge_error_rate']})")
    judge = OpenAIBackend(judge_url, c.get("judge_model", "default"), api_key=os.environ.get("OPENAI_API_KEY"))
    try:
        res = build_trajectories(rows, TransformersBackend(policy_path, batch_size=32, seed=cfg["seed"]), judge,
                                 Stage0Config(k=c["k"], temperature=c["temperature"],
                                              max_new_tokens=c["max_new_tokens"], downsample=c["downsample"],
                                              seed=cfg["seed"]))
    finally:
        if server is not None:
            server.stop()
    s = res.stats
    print(f"  stage 0: {s['questions']} questions, sample accuracy {s['sample_accuracy']:.3f}, judge agreement "
          f"{s['judge_agreement']:.3f} ({s.get('verifications_disagree', 0)} verifications dropped), "
          f"{s['trajectories']} trajectories " +
          str({k: v for k, v in s.items() if k.startswith("rounds_")}))
    with open(out_dir / "stage0.jsonl", "w") as fh:
        for r in res.records:
            fh.write(json.dumps(r) + "\n")
    (out_dir / "stage0_stats.json").write_text(json.dumps(s, indent=2))
    return res.records


def stage2(model_path: str, rows: list[dict], cfg: dict, out: str) -> tuple[str, list[dict]]:
    from datasets import Dataset
    from rewardkit_s2r.stage0 import policy_prompt
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit import get_hook, get_reward
    from rewardkit.trl import build_trainer

    c = cfg["stage2"]
    common = dict(output_dir=out, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                  max_steps=c["max_steps"], logging_steps=1, per_device_train_batch_size=c["batch_size"],
                  num_generations=c["num_generations"], max_completion_length=c["max_completion_length"],
                  learning_rate=float(c["learning_rate"]), gradient_checkpointing=False, seed=cfg["seed"],
                  temperature=c["temperature"], top_p=1.0, beta=float(c["beta"]), disable_tqdm=True,
                  loss_type="grpo", scale_rewards="none")
    if c["level"] == "process":
        reward = get_reward("s2r.process", bonus=c.get("bonus", False), truncated_penalty=c.get("truncated_penalty", False))
        hooks = [get_hook("s2r.process_advantage", baseline=c["baseline"], weighting=c.get("weighting", "action"))]
    elif c["level"] == "outcome":
        reward = get_reward("s2r.outcome")
        hooks = [get_hook("s2r.outcome_rloo")]
        common["importance_sampling_level"] = "sequence"
    else:
        raise SystemExit(f"stage2.level must be 'process' or 'outcome', got {c['level']!r}")
    ds = Dataset.from_list([{"prompt": policy_prompt(r["question"]), "solution": r["solution"]} for r in rows])
    trainer = build_trainer(GRPOTrainer, hooks=hooks, model=model_path, reward_funcs=[reward],
                            args=GRPOConfig(**common), train_dataset=ds)
    trainer.train()
    trainer.save_model(out)
    trainer.processing_class.save_pretrained(out)
    set_stop_tokens(out)
    return out, trainer.state.log_history


def main() -> None:
    from accelerate import PartialState
    from rewardkit_s2r.sft import S2RSFTCollator, sft_records
    from rewardkit_s2r.stage0 import policy_prompt

    from rewardkit.data import load_arithmetic
    from rewardkit.recipes import end_run, load_example_config
    from rewardkit.testing import tiny_model_dir

    cfg = load_example_config("examples/configs/s2r_pipeline.yaml", description=__doc__)
    state = PartialState()
    out_dir = Path(cfg["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_arithmetic()
    n_train, n_eval = cfg["data"]["train_questions"], cfg["data"]["eval_questions"]
    train_rows, eval_rows = data[:n_train], data[-n_eval:]
    t0 = time.time()
    results: dict = {"config": cfg}

    base = str(cfg["model"] or tiny_model_dir("causal_lm"))
    warm_dir = out_dir / "warmup"
    if cfg["warmup"]["enabled"] and cfg["warmup"].get("reuse") and (warm_dir / "config.json").exists():
        print(f"== warm-up: reusing {warm_dir}")
        base = str(warm_dir)
    elif cfg["warmup"]["enabled"]:
        print("== warm-up: plain solutions (the tiny model starts random)")
        rows = [{"prompt": policy_prompt(r["question"]),
                 "completion": [{"role": "assistant",
                                 "content": f"{r['reasoning']}\n\nThe answer is \\boxed{{{r['solution']}}}."}]}
                for r in train_rows]
        base = sft(base, rows, str(warm_dir), dict(cfg["warmup"], seed=cfg["seed"]))
    if state.is_main_process:
        results["base"] = evaluate(base, eval_rows, cfg, "base")
        print("== stage 0: data construction")
        records = stage0(base, train_rows, cfg, out_dir)
    state.wait_for_everyone()
    records = [json.loads(line) for line in open(out_dir / "stage0.jsonl")]
    print("== stage 1: SFT with the S2R action mask")
    from transformers import AutoTokenizer

    collator = S2RSFTCollator(AutoTokenizer.from_pretrained(base))
    stage1_rows = sft_records(records)
    if not stage1_rows:
        raise SystemExit(f"stage 0 kept no trajectories from {len(train_rows)} questions: nothing to fine-tune on "
                         "(more data.train_questions, a longer warm-up, or a real model)")
    sft_path = sft(base, stage1_rows, str(out_dir / "stage1"), dict(cfg["stage1"], seed=cfg["seed"]),
                   collator=collator)
    print(f"  masked {collator.masked_tokens} earlier-attempt tokens, trained on {collator.loss_tokens}")
    if state.is_main_process:
        results["stage1"] = evaluate(sft_path, eval_rows, cfg, "after stage 1 (SFT)")
    print(f"== stage 2: {cfg['stage2']['level']}-level RL")
    rl_path, history = stage2(sft_path, train_rows, cfg, str(out_dir / "stage2"))
    rewards = [h["reward"] for h in history if "reward" in h]
    accs = [h["s2r/final_accuracy"] for h in history if "s2r/final_accuracy" in h]
    k = max(1, len(rewards) // 4)
    print(f"  RL reward first {k} steps {sum(rewards[:k]) / k:.3f} -> last {k} steps {sum(rewards[-k:]) / k:.3f}; "
          f"rollout final-answer acc {sum(accs[:k]) / k:.3f} -> {sum(accs[-k:]) / k:.3f}")
    results["stage2_curve"] = {"reward": rewards, "final_accuracy": accs}
    if state.is_main_process:
        results["stage2"] = evaluate(rl_path, eval_rows, cfg, "after stage 2 (RL)")
        results["seconds"] = time.time() - t0
        (out_dir / "results.json").write_text(json.dumps(results, indent=2))
        print(f"done in {results['seconds']:.0f}s; results in {out_dir / 'results.json'}")
    end_run(state)


if __name__ == "__main__":
    main()
