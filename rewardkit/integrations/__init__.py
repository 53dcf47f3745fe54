"""Integrations with RL engines other than TRL.

``rewardkit.integrations.verl``        verl's custom reward function (per sample, batch, async)
``rewardkit.integrations.verl_dense``  a verl reward manager, agent-loop manager and advantage
                                       estimator for per-step (dense) process rewards in PPO
``rewardkit.integrations.openrlhf``    OpenRLHF's ``reward_func`` for ``--reward.remote_url file.py``

None of them imports TRL; only ``verl_dense`` imports verl.
"""
