"""Worker for tests/test_vision_zero3.py: a vision PRM (``VisionTaggedScorer`` on the tiny
Qwen2.5-VL) whose model the scorer shards itself under ZeRO-3, with uneven, mixed work on 2 ranks.

Call 1: rank 0 scores two image rows, rank 1 has no row at all (``keep_in_step``: idle forwards).
Call 2: rank 0 scores one text-only row, rank 1 an image row and a text-only row.
A forward without the vision tower on one rank while the other runs it would pair different
parameter gathers (a hang or a crash); the anchor rule keeps every forward's submodules the same.
Writes ``<out>/rank<r>.json`` with the step scores, the idle forwards and the engine type.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# (prompt, image seed or None, steps)
CALLS = {
    0: [[("What is 2 + 3?", 0, ["2 + 3 = 5.", "The answer is 5."]), ("What is 4 + 4?", 1, ["4 + 4 = 8."])],
        [("What is 7 * 2?", None, ["7 * 2 = 14.", "So 14."])]],
    1: [[],
        [("What is 6 + 1?", 2, ["6 + 1 = 7.", "So 7."]), ("What is 9 - 3?", None, ["9 - 3 = 6."])]],
}


def prompts_of(rows):
    from rewardkit.prm.multimodal import ImagePrompt
    from rewardkit.testing import tiny_images

    return [p if seed is None else ImagePrompt(p, tiny_images(1, seed=seed)) for p, seed, _ in rows]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import faulthandler

    import torch
    from trl import GRPOTrainer

    # a hang prints every rank's stack before the test's 420 s launch timeout kills it silently
    faulthandler.dump_traceback_later(float(os.environ.get("VISION_PRM_CHECK_DUMP_S", "360")), exit=True)

    from rewardkit.prm.multimodal import VisionTaggedScorer
    from rewardkit.testing import tiny_grpo_config, tiny_model_dir, tiny_prompt_dataset, tiny_vlm_dir
    from rewardkit.trl import end_run, zero_stage

    torch.set_num_threads(1)
    # the trainer sets up the DeepSpeed state the scorer's model is prepared under (it never trains)
    cfg = tiny_grpo_config(args.out, max_steps=1, per_device_train_batch_size=2, num_generations=2)
    trainer = GRPOTrainer(model=str(tiny_model_dir("causal_lm")),
                          reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                          args=cfg, train_dataset=tiny_prompt_dataset(4))
    scorer = VisionTaggedScorer(str(tiny_vlm_dir()), batch_size=1)
    rank = trainer.accelerator.process_index
    print(f"rank {rank}: trainer ready", file=sys.stderr, flush=True)
    scorer._load()
    print(f"rank {rank}: scorer loaded, sharded={scorer._lazy_sharded}", file=sys.stderr, flush=True)
    calls = []
    for k, rows in enumerate(CALLS[rank]):
        print(f"rank {rank}: call {k}", file=sys.stderr, flush=True)
        if rows:
            calls.append(scorer.score(prompts_of(rows), [s for _, _, s in rows]))
        else:
            scorer.keep_in_step()
            calls.append([])
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as fh:
        json.dump({"rank": rank, "world": trainer.accelerator.num_processes, "zero_stage": zero_stage(trainer=trainer),
                   "engine": type(scorer._lazy_model).__name__, "idle": scorer.idle_forwards, "calls": calls}, fh)
    end_run(trainer.accelerator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
