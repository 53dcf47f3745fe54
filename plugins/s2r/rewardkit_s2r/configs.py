"""Trainer settings that reproduce S²R's stage-2 RL with TRL 1.16 (paper §4, Tab. 9, §D.2).

Common to the paper's runs: n=4 samples per prompt, temperature 0.7, top_p 1, lr 5e-7, warmup 5,
weight decay 0, grad clip 1.0, clip ε=0.2, one pass per rollout batch. β is 0.01 for
Qwen2.5-Math-7B outcome-level and 0.05 for process-level (0.05 for Llama/Qwen2 in both).

* ``PAPER_RLOO_OUTCOME`` — ``RLOOConfig``: leave-one-out baseline over the other 3 samples, KL as
  sequence-level reward shaping with the k1 estimator on rollout log-probs (exactly S²R's
  advantage), no advantage normalisation. Differs from S²R in the ratio: TRL's RLOO uses the
  summed (not length-normalised) sequence log-ratio.
* ``PAPER_GRPO_OUTCOME`` — ``GRPOConfig`` + the ``s2r.outcome_rloo`` hook: RLOO advantage
  (``scale_rewards="none"`` then ×M/(M−1)), sequence-level length-normalised ratio
  (``importance_sampling_level="sequence"``) and every trajectory weighted equally
  (``loss_type="grpo"``) — S²R's ratio and weighting; KL, when β>0, is GRPO's per-token k3 loss
  term instead of reward shaping, so β defaults to 0 here.
* ``PAPER_GRPO_PROCESS`` — ``GRPOConfig`` for ``s2r.process`` + ``s2r.process_advantage``
  (``weighting="action"`` with ``loss_type="grpo"`` averages over actions, like the code's
  per-segment loss). The hook's advantages replace GRPO's, so ``scale_rewards`` only affects logs.
"""

from __future__ import annotations

_COMMON = dict(num_generations=4, temperature=0.7, top_p=1.0, learning_rate=5e-7, warmup_steps=5,
               weight_decay=0.0, max_grad_norm=1.0, epsilon=0.2, num_iterations=1)

PAPER_RLOO_OUTCOME = dict(_COMMON, beta=0.01, normalize_advantages=False)
PAPER_GRPO_OUTCOME = dict(_COMMON, beta=0.0, scale_rewards="none", importance_sampling_level="sequence",
                          loss_type="grpo")
PAPER_GRPO_PROCESS = dict(_COMMON, beta=0.05, scale_rewards="none", loss_type="grpo")
PAPER_PROCESS_HOOK = dict(baseline="group", weighting="action", markers="action")
# the released code's scoring: get_reward("s2r.process", **CODE_PROCESS_REWARD) with
# get_hook("s2r.process_advantage", **CODE_PROCESS_HOOK); get_reward("s2r.outcome", **CODE_OUTCOME_REWARD)
# with RLOOTrainer/PAPER_RLOO_OUTCOME or GRPOTrainer/PAPER_GRPO_OUTCOME + s2r.outcome_rloo
CODE_PROCESS_HOOK = dict(baseline="running", min_count=10, context_keys="code", split="code", weighting="action")
CODE_PROCESS_REWARD = dict(mode="code")
CODE_OUTCOME_REWARD = dict(mode="code")
