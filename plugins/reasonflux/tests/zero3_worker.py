"""Worker for test_reasonflux_zero3.py: the embedding rewards and a local judge under a 2-process
ZeRO-3 launch, loaded lazily after the training arguments exist (when transformers would build
them partitioned). Writes ``<out>/rank<r>.json``."""

import json
import os
import sys

PROMPTS = ["What is 2 + 3?", "What is 4 * 2?"]
COMPLETIONS = ["<think>Add 2 and 3.\n\nThat makes 5.</think>The answer is \\boxed{5}.",
               "<think>Four twice.\n\nEight in all.\n\nCheck: 8.</think>So the answer is \\boxed{8}."]


def main() -> int:
    from rewardkit_reasonflux.judge import TransformersBackend
    from transformers.integrations import is_deepspeed_zero3_enabled

    from rewardkit import get_reward
    from rewardkit.testing import tiny_grpo_config, tiny_model_dir
    from rewardkit.trl import end_run

    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    args = tiny_grpo_config(out, max_steps=1)  # in a ZeRO-3 launch: zero.Init for every later load while it lives
    zero3 = is_deepspeed_zero3_enabled()
    values = {name: get_reward(name)(PROMPTS, COMPLETIONS) for name in ("reasonflux.alignment", "reasonflux.coherence")}
    judge = TransformersBackend(str(tiny_model_dir("causal_lm")))
    values["judge"] = judge.complete(PROMPTS, max_tokens=4)
    from accelerate import PartialState

    state = PartialState()
    with open(os.path.join(out, f"rank{state.process_index}.json"), "w") as fh:
        json.dump({"rank": state.process_index, "zero3": zero3, "zero3_after": is_deepspeed_zero3_enabled(),
                   "values": values, "use_cpu": args.use_cpu}, fh)
    end_run(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
