"""S²R end to end on the bundled arithmetic set: stage 0 data → stage 1 SFT → stage 2 RL.

    accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
        examples/s2r_pipeline.py --config examples/configs/s2r_pipeline.yaml

The tiny random model first learns plain boxed answers (``warmup_epochs``); stage 0 samples ``k``
answers per question and has a judge verify them (default: the offline scripted teacher served on
a loopback port, flipping 10% of its verdicts; ``--judge URL`` for a real LLM); stage 1 is SFT with
S²R's action mask; stage 2 is GRPO with ``s2r.process`` + ``s2r.process_advantage`` (``--level
outcome``: ``s2r.outcome`` + ``s2r.outcome_rloo``). Greedy evaluation on held-out questions after
each stage goes to ``results.json`` next to the RL model and its run report. Arguments: this script's
(below) and every ``GRPOConfig`` field (stage 2), from the YAML file or flags, as in TRL's scripts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class S2RArguments:
    model: str = "tiny"                    # 'tiny', 'smollm2', a Hub id or a local path
    train_questions: int = 416             # first N bundled problems: stage 0, SFT and RL prompts
    eval_questions: int = 96               # last N bundled problems, held out
    warmup_epochs: int = 16                # plain-solution SFT first (0: none, e.g. for a real model)
    warmup_learning_rate: float = 3e-3
    sft_batch_size: int = 16
    stage1_epochs: int = 12
    stage1_learning_rate: float = 2e-3
    k: int = 5                             # stage 0: samples per question (paper: 5, temperature 0.7)
    sample_temperature: float = 0.7
    sample_max_new_tokens: int = 48
    judge: str = "scripted-arithmetic"     # or an OpenAI-compatible base URL (judge_model names the model)
    judge_model: str = "default"
    judge_error_rate: float = 0.1          # scripted teacher: flipped verdicts the agreement filter drops
    downsample: bool = False               # the released keep probabilities
    level: str = "process"                 # process | outcome
    baseline: str = "group"                # process level: group (paper) | running (released code)
    weighting: str = "action"
    bonus: bool = False                    # released code's doubled advantages
    truncated_penalty: bool = False        # released code's -1 on the last action without EOS
    eval_max_new_tokens: int = 192

    def __post_init__(self) -> None:
        if self.level not in ("process", "outcome"):
            raise ValueError(f"level must be 'process' or 'outcome', got {self.level!r}")


def sft(model: str, rows: list[dict], out: Path, epochs: int, lr: float, a: S2RArguments, cfg, collator=None) -> str:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from rewardkit.trl import release_trainer

    tok = AutoTokenizer.from_pretrained(model)
    args = SFTConfig(output_dir=str(out), use_cpu=cfg.use_cpu, bf16=cfg.bf16, report_to="none", save_strategy="no",
                     num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=a.sft_batch_size,
                     gradient_checkpointing=False, logging_steps=10, lr_scheduler_type="cosine", warmup_steps=5,
                     disable_tqdm=True, seed=cfg.seed)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         data_collator=collator)
    trainer.train()
    trainer.save_model(str(out))
    release_trainer(trainer)
    return stop_at_end_of_turn(str(out), tok)


def stop_at_end_of_turn(path: str, tok) -> str:
    """Generation from ``path`` stops at the chat template's end of turn as well as at EOS."""
    from transformers import GenerationConfig

    gen = GenerationConfig.from_pretrained(path)
    ids = (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>"))
    gen.eos_token_id = sorted({i for i in ids if i is not None and i >= 0})
    gen.save_pretrained(path)
    return path


def evaluate(model: str, rows: list[dict], a: S2RArguments, label: str, results: dict) -> None:
    from rewardkit_s2r.backends import TransformersBackend
    from rewardkit_s2r.evaluation import evaluate_policy

    m, texts = evaluate_policy(TransformersBackend(model, batch_size=32), rows, max_new_tokens=a.eval_max_new_tokens)
    print(f"[{label}] " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()) + f"\n  sample output: {texts[0][:300]!r}")
    results[label] = m


def stage0(model: str, rows: list[dict], a: S2RArguments, seed: int, out: Path) -> dict:
    from rewardkit_s2r.backends import TransformersBackend, get_backend, serve
    from rewardkit_s2r.stage0 import ScriptedArithmeticJudge, Stage0Config, build_trajectories

    server, judge = None, a.judge
    if judge == "scripted-arithmetic":  # the offline teacher, served on loopback like a real judge
        server, judge = serve(ScriptedArithmeticJudge({r["question"]: r["solution"] for r in rows},
                                                      error_rate=a.judge_error_rate, seed=seed))
    try:
        res = build_trajectories(rows, TransformersBackend(model, batch_size=32, seed=seed),
                                 get_backend(judge, model=a.judge_model, api_key=os.environ.get("OPENAI_API_KEY")),
                                 Stage0Config(k=a.k, temperature=a.sample_temperature, downsample=a.downsample,
                                              max_new_tokens=a.sample_max_new_tokens, seed=seed))
    finally:
        if server is not None:
            server.stop()
    print(f"  stage 0: {json.dumps(res.stats)}")
    (out / "stage0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in res.records))
    return res.stats


def main(a: S2RArguments, cfg) -> dict:
    from datasets import Dataset
    from rewardkit_s2r.sft import S2RSFTCollator, sft_records
    from rewardkit_s2r.stage0 import policy_prompt
    from run_report import write_run_report
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from rewardkit import get_hook, get_reward
    from rewardkit.data import load_arithmetic
    from rewardkit.testing import resolve_model
    from rewardkit.trl import build_trainer, end_run, launch_state

    state, out, results = launch_state(cfg.use_cpu), Path(cfg.output_dir), {}
    out.mkdir(parents=True, exist_ok=True)
    data = load_arithmetic()
    train, held_out = data[:a.train_questions], data[-a.eval_questions:]
    model, _ = resolve_model(a.model, state, seed=cfg.seed)
    if a.warmup_epochs > 0:
        plain = [{"prompt": policy_prompt(r["question"]), "completion": [
            {"role": "assistant", "content": f"{r['reasoning']}\n\nThe answer is \\boxed{{{r['solution']}}}."}]}
            for r in train]
        model = sft(model, plain, out / "warmup", a.warmup_epochs, a.warmup_learning_rate, a, cfg)
    if state.is_main_process:
        evaluate(model, held_out, a, "base", results)
        results["stage0"] = stage0(model, train, a, cfg.seed, out)
    state.wait_for_everyone()
    records = sft_records([json.loads(line) for line in open(out / "stage0.jsonl")])
    if not records:
        raise SystemExit("stage 0 kept no trajectories: more train_questions, a longer warm-up, or a real model")
    collator = S2RSFTCollator(AutoTokenizer.from_pretrained(model))
    model = sft(model, records, out / "stage1", a.stage1_epochs, a.stage1_learning_rate, a, cfg, collator)
    print(f"  stage 1: masked {collator.masked_tokens} earlier-attempt tokens, trained on {collator.loss_tokens}")
    if state.is_main_process:
        evaluate(model, held_out, a, "after stage 1 (SFT)", results)
    if a.level == "process":
        reward = get_reward("s2r.process", bonus=a.bonus, truncated_penalty=a.truncated_penalty)
        hook = get_hook("s2r.process_advantage", baseline=a.baseline, weighting=a.weighting)
    else:
        reward, hook = get_reward("s2r.outcome"), get_hook("s2r.outcome_rloo")
        cfg.importance_sampling_level = "sequence"  # S2R's length-normalised sequence ratio
    prompts = Dataset.from_list([{"prompt": policy_prompt(r["question"]), "solution": r["solution"]} for r in train])
    trainer = build_trainer(GRPOTrainer, hooks=[hook], model=model, reward_funcs=[reward], args=cfg,
                            train_dataset=prompts)
    trainer.train()
    trainer.save_model(str(out))
    if state.is_main_process:
        stop_at_end_of_turn(str(out), trainer.processing_class)
        results["stage2"] = write_run_report(trainer.state.log_history, [reward.name], out,
                                             title=f"S2R stage 2 ({a.level} level)")
        print(f"  stage 2: {json.dumps(results['stage2'])}")
        evaluate(str(out), held_out, a, "after stage 2 (RL)", results)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"results in {out / 'results.json'}")
    end_run(state)
    return results


if __name__ == "__main__":
    from trl import GRPOConfig, TrlParser

    from rewardkit.trl import machine_defaults

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = TrlParser((S2RArguments, GRPOConfig))
    parser.set_defaults(**machine_defaults())
    main(*parser.parse_args_and_config())
