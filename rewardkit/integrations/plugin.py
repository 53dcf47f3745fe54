"""Built-in plugin: ``rewardkit verl-config``, the Hydra overrides that wire rewardkit into verl."""

from __future__ import annotations

import argparse
import os

from rewardkit.hookspecs import hookimpl

EPILOG = """examples:
  rewardkit verl-config --spec rewards.yaml                          # GRPO or PPO, outcome rewards
  rewardkit verl-config --spec rewards.yaml --mode dense             # PPO + critic, per-step rewards
  rewardkit verl-config --spec rewards.yaml --mode process_supervision   # DeepSeekMath PS advantages

  python -m verl.trainer.main_ppo $(rewardkit verl-config --spec rewards.yaml --mode dense) \\
      data.train_files=... actor_rollout_ref.model.path=...
(one override per line; paths with spaces need quoting by hand)
"""

MODES = ("outcome", "dense", "process_supervision")


def overrides(spec: str, mode: str = "outcome", *, use_async: bool = False, gold_column: str | None = None,
              prompt_column: str | None = None, legacy: bool = False) -> list[str]:
    """verl 0.9 Hydra overrides for a rewardkit spec (see docs/engines.md). verl 0.9's reward loop
    has no batch manager (the old ``BatchRewardManager`` is not in its registry), so the batch
    function is for older verl and direct calls, not printed here."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    name = "compute_score_async" if use_async else "compute_score"
    if legacy:
        if mode != "outcome":
            raise ValueError("the dense modes need verl 0.9's reward loop; --legacy prints outcome rewards only")
        # older verl: a top-level custom_reward_function loaded from a file path (verl 0.9's fully-async
        # trainer still migrates it; its main_ppo reads only reward.custom_reward_function)
        from rewardkit.integrations import verl as module

        fn = "custom_reward_function"
        out = [f"{fn}.path={os.path.abspath(module.__file__)}", f"{fn}.name={name}",
               f"+{fn}.reward_kwargs.spec={os.path.abspath(spec)}"]
    else:
        fn = "reward.custom_reward_function"
        out = [f"{fn}.path=pkg://rewardkit.integrations.verl", f"{fn}.name={name}",
               f"+{fn}.reward_kwargs.spec={os.path.abspath(spec)}"]
    if gold_column:
        out.append(f"+{fn}.reward_kwargs.gold_column={gold_column}")
    if prompt_column:
        out.append(f"+{fn}.reward_kwargs.prompt_column={prompt_column}")
    if mode != "outcome":
        out += [f"+{fn}.reward_kwargs.dense_mode={mode}",
                "reward.reward_manager.source=importlib",
                "reward.reward_manager.name=RewardkitDenseRewardManager",
                "reward.reward_manager.module.path=pkg://rewardkit.integrations.verl_dense",
                "+actor_rollout_ref.rollout.agent.agent_loop_manager_class="
                "rewardkit.integrations.verl_dense.DenseAgentLoopManager"]
        out.append("algorithm.adv_estimator=" + ("gae" if mode == "dense" else "rewardkit_process_supervision"))
    return out


def configure(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--spec", required=True, help="the rewards YAML (read by every reward worker at this path)")
    p.add_argument("--mode", choices=MODES, default="outcome",
                   help="outcome: one score per response; dense: step scores on the tokens ending the steps "
                        "(PPO with a critic); process_supervision: DeepSeekMath process-supervision advantages")
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="use compute_score_async (verl's reward loop batches concurrent calls into one)")
    p.add_argument("--legacy", action="store_true",
                   help="the top-level custom_reward_function of older verl (a file path; outcome mode only)")
    p.add_argument("--gold-column", help="the column ground_truth is passed as (default: solution)")
    p.add_argument("--prompt-column", help="the extra_info key holding the question (default: question)")


def run(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.spec):
        raise SystemExit(f"--spec {args.spec!r} is not a file")
    from rewardkit.compose import compose, load_spec

    compose(load_spec(args.spec))  # fail here, not in every reward worker of the verl run
    for line in overrides(args.spec, args.mode, use_async=args.use_async, legacy=args.legacy,
                          gold_column=args.gold_column, prompt_column=args.prompt_column):
        print(line)
    return 0


@hookimpl
def rewardkit_register_commands(register):
    register("verl-config", configure, run, help="print the verl Hydra overrides for a rewards spec")
