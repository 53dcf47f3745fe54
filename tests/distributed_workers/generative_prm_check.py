"""Worker for tests/test_distributed_zero.py: a generative PRM (``PrefixScorer`` with greedy
verdicts) whose model the scorer shards itself under ZeRO-3, with uneven work across 2 ranks.

Call 1: rank 0 scores three trajectories, rank 1 has no step at all (``keep_in_step``).
Call 2: both ranks score, rank 1 with more rows (more generate calls) than rank 0.
Without the lockstep and ``synced_gpus`` a rank would wait forever in a sharded forward.
Writes ``<out>/rank<r>.json`` with the step scores, the idle generate calls and the engine type.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

CALLS = {
    0: [[("Add 2 and 3.", "2 + 3 = 5\nSo \\boxed{5}"), ("Add 4 and 4.", "4 + 4 = 8"),
         ("Double 7.", "7 * 2 = 14\nAnswer 14")],
        [("Halve 10.", "10 / 2 = 5")]],
    1: [[("Add 1 and 1.", "")],
        [("Add 6 and 1.", "6 + 1 = 7"), ("Triple 3.", "3 * 3 = 9\nSo 9"), ("Add 5 and 5.", "5 + 5 = 10"),
         ("Halve 8.", "8 / 2 = 4\nSo \\boxed{4}")]],
}


def as_text(prompt: str, steps: list[str]) -> str:
    """Prompt template: the prefix ends in its last step's own tokens, so the greedy
    continuations differ from prefix to prefix (the tiny model repeats the last token)."""
    return " ".join([prompt, *steps])


def text_checksum(text: str) -> float:
    """The "verdict": a checksum of the generated text, so any change in the generated tokens shows."""
    return float(sum(ord(ch) * (i + 1) for i, ch in enumerate(text)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    from trl import GRPOTrainer

    from rewardkit.prm import PrefixScorer, PRMReward
    from rewardkit.testing import tiny_grpo_config, tiny_model_dir, tiny_prompt_dataset
    from rewardkit.trl import end_run, zero_stage

    path = str(tiny_model_dir("causal_lm"))
    # the trainer sets up the DeepSpeed state the scorer's model is prepared under (it never trains)
    cfg = tiny_grpo_config(args.out, max_steps=1, per_device_train_batch_size=2, num_generations=2)
    trainer = GRPOTrainer(model=path, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                          args=cfg, train_dataset=tiny_prompt_dataset(4))
    scorer = PrefixScorer(path, head="lm", template=as_text, max_new_tokens=3, batch_size=1, max_batch_tokens=None,
                          parse=text_checksum)
    prm = PRMReward(scorer, reducer="mean", splitter="line", name="genprm")
    rank = trainer.accelerator.process_index
    calls = []
    for rows in CALLS[rank]:
        prompts, completions = [p for p, _ in rows], [c for _, c in rows]
        prm(prompts, completions)
        calls.append([None if s is None else s.scores for s in prm.last_step_scores])
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as fh:
        json.dump({"rank": rank, "world": trainer.accelerator.num_processes, "zero_stage": zero_stage(trainer=trainer),
                   "engine": type(scorer._lazy_model).__name__, "idle": scorer.idle_forwards, "calls": calls}, fh)
    end_run(trainer.accelerator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
