"""Benchmark: the cost of ``process_advantage`` on a GRPO step (tiny model, CPU).

Baseline: plain GRPO with the same PRM process reward (``PRMReward``, tagged backend) in
``reward_funcs`` and no hook. Candidate: the same trainer built with the ``process_advantage``
hook (per-token advantages from the PRM's step scores). Both run in this process, interleaved,
and the median step time of each is compared (target: candidate / baseline <= 1.10).

    python bench/grpo_overhead.py --steps 8 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (on a GPU, after its queued kernels finish)."""

    def __init__(self):
        self.times, self._t = [], None

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kw):
        self._sync()
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self._sync()
        self.times.append(time.perf_counter() - self._t)


class TimedHook:
    """Wraps ProcessAdvantageHook.after_rollout to time the hook's own work inside each step."""

    def __new__(cls):
        from rewardkit.trl import ProcessAdvantageHook

        class _Timed(ProcessAdvantageHook):
            def __init__(self):
                super().__init__()
                self.times = []

            def after_rollout(self, trainer, inputs, output):
                t = time.perf_counter()
                out = super().after_rollout(trainer, inputs, output)
                self.times.append(time.perf_counter() - t)
                return out

        return _Timed()


def run(hooked: bool, steps: int, out: str, completion_len: int) -> tuple[list[float], list[float]]:
    from trl import GRPOTrainer

    from rewardkit.prm import PRMReward, TaggedScorer
    from rewardkit.testing import tiny_grpo_config, tiny_model_dir, tiny_prompt_dataset
    from rewardkit.trl import build_trainer

    prm = PRMReward(TaggedScorer(str(tiny_model_dir("prm"))), reducer="min", splitter="re: ", name="prm")
    timer = StepTimer()
    args = tiny_grpo_config(out, max_steps=steps + 1, per_device_train_batch_size=8, num_generations=4,
                            max_completion_length=completion_len, logging_steps=1000)
    kwargs = dict(model=str(tiny_model_dir("causal_lm")), reward_funcs=[prm], args=args,
                  train_dataset=tiny_prompt_dataset(64), callbacks=[timer])
    hook = TimedHook() if hooked else None
    if hooked:
        trainer = build_trainer(GRPOTrainer, hooks=[hook], **kwargs)
    else:
        trainer = GRPOTrainer(**kwargs)
    trainer.train()
    # the first step warms up
    return timer.times[1:], (hook.times[1:] if hook else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--completion-length", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    plain, hooked, in_hook, shares = [], [], [], []
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            for h in order:
                steps, hook_times = run(h, args.steps, f"{d}/{r}{int(h)}", args.completion_length)
                (hooked if h else plain).extend(steps)
                in_hook.extend(hook_times)
                if h:
                    shares += [s / (s - k) for s, k in zip(steps, hook_times)]
    mp, mh = statistics.median(plain), statistics.median(hooked)
    print(f"GRPO tiny model, batch 8 x {args.completion_length} tokens, {len(plain)} timed steps each")
    print(f"plain GRPO + PRM reward (baseline): median step {mp * 1000:.1f} ms")
    print(f"GRPO + PRM reward + process_advantage: median step {mh * 1000:.1f} ms")
    print(f"time inside the hook per step: median {statistics.median(in_hook) * 1000:.2f} ms")
    ratio = mh / mp
    share = statistics.median(shares)
    print(f"ratio process_advantage / plain (interleaved runs): {ratio:.3f}x "
          f"({'meets' if ratio <= 1.10 else 'misses'} the <= 1.10x target)")
    print(f"ratio within the hooked steps, step / (step - hook time): {share:.3f}x "
          f"({'meets' if share <= 1.10 else 'misses'} the <= 1.10x target; robust to machine load)")


if __name__ == "__main__":
    main()
