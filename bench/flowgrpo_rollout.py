"""Flow-GRPO rollout throughput and the share of step time outside model forward/backward.

Runs a real GRPOTrainer with the Flow-GRPO rollout (G=8 trajectories per query, T_max=3 planner
turns, the tiny planner, the toy tool task) and, as the named baseline, plain single-turn GRPO on the
same model with the same number of rows per step (G*T_max completions). Both are timed in this run:

* rollouts/s: trajectories finished per second of rollout time (planner sampling + tools + frozen
  modules + padding), and planner turns per second;
* the share of step time outside model forward/backward: 1 - (time inside ``model.forward``, which
  covers generation, log-prob and training forwards, plus ``accelerator.backward``) / step time.

    python bench/flowgrpo_rollout.py [--steps 4] [--queries 1] [--max-completion-length 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

G, T_MAX = 8, 3


class Timers:
    def __init__(self) -> None:
        self.forward = 0.0
        self.backward = 0.0
        self.rollout = 0.0
        self.depth = 0

    def reset(self) -> None:
        self.forward = self.backward = self.rollout = 0.0


def instrument(trainer, timers: Timers) -> None:
    """Time every model forward (outermost call only) and every backward of the trainer."""
    model = trainer.model
    inner = model.forward

    def forward(*args, **kwargs):
        if timers.depth:
            return inner(*args, **kwargs)
        timers.depth += 1
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            timers.forward += time.perf_counter() - t
            timers.depth -= 1

    model.forward = forward
    acc = trainer.accelerator
    backward = acc.backward

    def timed_backward(loss, **kwargs):
        t = time.perf_counter()
        try:
            return backward(loss, **kwargs)
        finally:
            timers.backward += time.perf_counter() - t

    acc.backward = timed_backward


def step_callback(record: list):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            record.append(time.perf_counter() - self.t)

    return StepTimer()


def run(kind: str, steps: int, queries: int, max_len: int, model_path: str, tok) -> dict:
    from rewardkit_flowgrpo import FlowRollout, grpo_kwargs
    from rewardkit_flowgrpo.toy import toy_dataset, toy_system
    from trl import GRPOTrainer

    from rewardkit import get_hook, get_reward
    from rewardkit.testing import tiny_grpo_config
    from rewardkit.trl import build_trainer

    timers = Timers()
    step_times: list[float] = []
    out = tempfile.mkdtemp(prefix=f"bench-flowgrpo-{kind}-")
    data = toy_dataset(64)
    if kind == "flowgrpo":
        rollout = FlowRollout(toy_system(tok, max_turns=T_MAX), G)
        inner_call = rollout.run

        def timed_run(*a, **k):
            t = time.perf_counter()
            try:
                return inner_call(*a, **k)
            finally:
                timers.rollout += time.perf_counter() - t

        rollout.run = timed_run
        kw = grpo_kwargs("paper", group_size=G, max_turns=T_MAX, queries_per_device=queries)
        kw.update(beta=0.0, temperature=1.0)
        args = tiny_grpo_config(out, max_steps=steps + 1, max_completion_length=max_len, **kw)
        trainer = build_trainer(GRPOTrainer, hooks=[get_hook("flowgrpo.broadcast")], model=model_path,
                                processing_class=tok, reward_funcs=[get_reward("flowgrpo.outcome")], args=args,
                                train_dataset=data, rollout_func=rollout, callbacks=[step_callback(step_times)])
    else:
        rows = G * T_MAX * queries
        args = tiny_grpo_config(out, max_steps=steps + 1, max_completion_length=max_len, num_generations=G,
                                per_device_train_batch_size=rows, beta=0.0, temperature=1.0)
        answer = get_reward("math.accuracy", gold_column="answer", on_error="none")
        trainer = GRPOTrainer(model=model_path, processing_class=tok, reward_funcs=[answer], args=args,
                              train_dataset=data, callbacks=[step_callback(step_times)])
        rollout = None
    instrument(trainer, timers)
    # the first step pays one-off costs (allocations, lazy imports): measure the following ones
    first = {}

    from transformers import TrainerCallback

    class ResetAfterFirst(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 1:
                first["done"] = True
                timers.reset()

    trainer.add_callback(ResetAfterFirst())
    trainer.train()
    measured = step_times[1:]
    total = sum(measured)
    res = {"kind": kind, "steps": len(measured), "step_s": total / len(measured),
           "outside_share": 1 - (timers.forward + timers.backward) / total,
           "forward_s": timers.forward / len(measured), "backward_s": timers.backward / len(measured)}
    if rollout is not None:
        trajs = G * queries * len(measured)
        turns = sum(h.get("flowgrpo/turns_mean", 0) for h in trainer.state.log_history[1:]) * G * queries
        res.update(rollouts_per_s=trajs / timers.rollout, turns_per_s=turns / timers.rollout,
                   rollout_s=timers.rollout / len(measured))
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--queries", type=int, default=1, help="queries per step (G*T_max rows each)")
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()
    import torch
    from transformers import AutoTokenizer

    from rewardkit.testing import tiny_model_dir

    torch.set_num_threads(a.threads)
    path = str(tiny_model_dir())
    tok = AutoTokenizer.from_pretrained(path)
    base = run("single_turn", a.steps, a.queries, a.max_completion_length, path, tok)
    flow = run("flowgrpo", a.steps, a.queries, a.max_completion_length, path, tok)
    rows = G * T_MAX * a.queries
    print(f"\nFlow-GRPO rollout bench: G={G}, T_max={T_MAX}, {a.queries} query/step ({rows} turn rows), tiny model, "
          f"{a.steps} measured steps, torch threads={a.threads}")
    print(f"  baseline single-turn GRPO ({rows} completions/step): step {base['step_s']:.3f}s, "
          f"outside forward/backward {100 * base['outside_share']:.1f}%")
    print(f"  Flow-GRPO: step {flow['step_s']:.3f}s, rollout {flow['rollout_s']:.3f}s/step, "
          f"{flow['rollouts_per_s']:.1f} rollouts/s ({flow['turns_per_s']:.1f} planner turns/s), "
          f"outside forward/backward {100 * flow['outside_share']:.1f}%")
    print(f"  ratio Flow-GRPO / single-turn GRPO step time: {flow['step_s'] / base['step_s']:.2f}x")
    print(f"rollouts_per_s={flow['rollouts_per_s']:.2f} outside_share={flow['outside_share']:.3f} "
          f"baseline_outside_share={base['outside_share']:.3f} step_ratio={flow['step_s'] / base['step_s']:.2f}")


if __name__ == "__main__":
    main()
