"""Built-in plugin of the PRM core: the ``prm.score`` reward, the ``prm.process_advantage`` hook and
the ``rewardkit eval-prm`` command."""

from __future__ import annotations

from rewardkit.hookspecs import hookimpl


def _process_advantage(**params):
    from rewardkit.trl.process_advantage import ProcessAdvantageHook

    return ProcessAdvantageHook(**params)


def _prm_score(**params):
    from rewardkit.prm.reward import prm_reward

    return prm_reward(**params)


@hookimpl
def rewardkit_register_rewards(register):
    register("prm.score", _prm_score, kind="process",
             description="per-step scores of a PRM (tagged / prefix / remote backend) reduced to a scalar")


@hookimpl
def rewardkit_register_hooks(register):
    register("prm.process_advantage", _process_advantage, renamed_from="process_advantage",
             description="per-token advantages from per-step process rewards (DeepSeekMath process "
                         "supervision, or outcome + lambda * process)")


@hookimpl
def rewardkit_register_commands(register):
    from rewardkit.prm import evaluation

    register("eval-prm", evaluation.configure_cli, evaluation.run_cli,
             help="score a step-labelled file (or CHAMP's first-wrong-step annotations: eval-prm champ) with a PRM; "
                  "print step accuracy/F1 and ProcessBench F1")
