"""Sample completions through a GRPO trainer's own generation path, outside TRL's rollout step.

Multi-turn methods that build their rows in a ``rollout_func`` (Flow-GRPO samples one planner turn
per call) still want the trainer's sampler: transformers ``generate`` or vLLM (server or colocated),
with TRL syncing the policy weights into vLLM when the step changed, and the trainer's sampling
settings (temperature, top-p/k, ``max_completion_length``). TRL exposes that only as the private
``GRPOTrainer._generate_single_turn``; this module is the one place that calls it, and
:func:`rewardkit.trl.check_trl_compat` (``generation=True``) checks its signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardkit.trl.compat import check_trl_compat


def generate_completions(trainer: Any, prompt_ids: Sequence[Sequence[int]]
                         ) -> tuple[list[list[int]], list[list[float]] | None]:
    """Sample one completion per tokenised prompt with the trainer's sampler and sampling settings.

    Returns the completion ids (as sampled, never re-tokenised: up to ``max_completion_length``
    tokens, ending at the first EOS) and the sampler's per-token log-probs, or None when the backend
    keeps none (transformers ``generate``). For several samples of one prompt, repeat it in
    ``prompt_ids``. Under several processes every rank must call this the same number of times
    (vLLM server mode gathers prompts across ranks; ZeRO-3 gathers parameters).
    """
    check_trl_compat(type(trainer), generation=True)
    # num_generations=1: every row is its own prompt (vLLM server mode would otherwise keep one
    # prompt per run of num_generations rows and sample n of each)
    completion_ids, logprobs = trainer._generate_single_turn([list(p) for p in prompt_ids], None, {}, 1)
    completions = [list(c) for c in completion_ids]
    return completions, None if logprobs is None else [list(lp) for lp in logprobs]
