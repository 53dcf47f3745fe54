"""Dense (per-step) process rewards for verl 0.9 PPO, and DeepSeekMath process supervision.

verl 0.9 computes rewards in its reward loop: a reward manager's ``run_single`` returns one
``reward_score`` per response, and the agent loop places it on the last valid token of
``rm_scores`` (``AgentLoopOutput.reward_score`` is a float). Per-token rewards therefore need two
pieces, both loaded by verl's own configuration:

:class:`RewardkitDenseRewardManager` (``reward.reward_manager.source=importlib``,
    ``module.path=pkg://rewardkit.integrations.verl_dense``) scores each response with the
    rewardkit spec, returns the weighted total as ``reward_score`` (so verl's scalar path still
    sees the same number as :func:`rewardkit.integrations.verl.compute_score`) and carries each
    process reward's steps on the response's tokens in ``reward_extra_info``
    (:func:`rewardkit.integrations.dense.step_rows`).
:class:`DenseAgentLoopManager` (``actor_rollout_ref.rollout.agent.agent_loop_manager_class``)
    runs on the driver after each rollout and rewrites ``rm_scores`` from those rows:
    ``dense_mode=dense`` puts each step's weighted score on the token ending the step and the
    outcome rewards on the last valid token (for GAE with a critic); ``dense_mode=
    process_supervision`` writes DeepSeekMath's process-supervision advantages, grouped by ``uid``,
    for the ``rewardkit_process_supervision`` advantage estimator registered here (it takes them
    as they are). It then drops the carrier rows so they are not logged.

``rewardkit verl-config`` prints the overrides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from verl import DataProto
from verl.experimental.agent_loop import AgentLoopManager
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
from verl.trainer.ppo.core_algos import register_adv_est
from verl.utils.ray_utils import auto_await

from rewardkit.integrations.dense import StepRows, dense_row, process_supervision_rows, step_rows
from rewardkit.integrations.verl import get_scorer, plain

__all__ = ["ESTIMATOR", "DenseAgentLoopManager", "RewardkitDenseRewardManager", "apply_dense_rewards",
           "compute_process_supervision_advantage", "reward_kwargs_of"]

ESTIMATOR = "rewardkit_process_supervision"
MODES = ("dense", "process_supervision")
PREFIX = "rewardkit_dense/"
OUTCOME_KEY = PREFIX + "outcome"
_ROWS = ("count", "total", "squares")


def reward_kwargs_of(config: Any) -> dict[str, Any]:
    """The rewardkit kwargs (``spec`` and options) from a verl config: ``reward.custom_reward_function.
    reward_kwargs``, the same place :func:`~rewardkit.integrations.verl.compute_score` reads them."""
    reward = config.reward if hasattr(config, "reward") else config["reward"]
    fn = reward.get("custom_reward_function") or {}
    kwargs = plain(fn.get("reward_kwargs") or {})
    if "spec" not in kwargs:
        raise ValueError("rewardkit's dense reward needs +reward.custom_reward_function.reward_kwargs.spec="
                         "<rewards.yaml> (run `rewardkit verl-config --spec rewards.yaml --mode dense`)")
    mode = kwargs.get("dense_mode", "dense")
    if mode not in MODES:
        raise ValueError(f"dense_mode must be one of {MODES}, got {mode!r}")
    return kwargs


class RewardkitDenseRewardManager(RewardManagerBase):
    """verl reward-loop manager: the spec's scores plus each process reward's steps on tokens."""

    def __init__(self, config: Any, tokenizer: Any, compute_score: Any = None, reward_router_address: Any = None,
                 reward_model_tokenizer: Any = None, **_: Any) -> None:
        super().__init__(config, tokenizer, compute_score)
        self.reward_kwargs = reward_kwargs_of(config)
        self.scorer = get_scorer(**self.reward_kwargs)
        self.width = int(config.actor_rollout_ref.rollout.response_length)

    def score_item(self, data: DataProto) -> dict[str, Any]:
        """Score the last sequence of ``data`` (what ``run_single`` returns), synchronously."""
        item = data[len(data) - 1]
        response_ids = item.batch["responses"]
        n_resp = response_ids.shape[-1]
        length = int(item.batch["attention_mask"][-n_resp:].sum())
        ids = response_ids[:length].tolist()
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        nt = item.non_tensor_batch
        reward_model = nt.get("reward_model") or {}
        extra = dict(nt.get("extra_info") or {})
        rows, steps = self.scorer.score([text], [reward_model.get("ground_truth")], [extra],
                                        [nt.get("data_source")], completion_ids=[ids], with_steps=True)
        info: dict[str, Any] = dict(rows[0])
        info[OUTCOME_KEY] = steps[0].outcome
        for name, weight, scores in steps[0].steps:
            part = step_rows(scores, ids, text, self.tokenizer, self.width, weight)
            info[f"{PREFIX}{name}/weight"] = part.weight
            for key in _ROWS:
                info[f"{PREFIX}{name}/{key}"] = getattr(part, key)
        return {"reward_score": rows[0]["score"], "reward_extra_info": info}

    async def run_single(self, data: DataProto) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(None, self.score_item, data)


def _parts(non_tensor: Mapping[str, np.ndarray], i: int) -> dict[str, StepRows]:
    names = sorted({k[len(PREFIX):].rsplit("/", 1)[0] for k in non_tensor
                    if k.startswith(PREFIX) and k.endswith("/weight")})
    return {n: StepRows(float(non_tensor[f"{PREFIX}{n}/weight"][i]),
                        *(list(map(float, non_tensor[f"{PREFIX}{n}/{key}"][i])) for key in _ROWS))
            for n in names}


def apply_dense_rewards(output: DataProto, mode: str = "dense", uids: Any = None, eps: float = 1e-4) -> DataProto:
    """Rewrite ``output.batch["rm_scores"]`` from the rows :class:`RewardkitDenseRewardManager` left in
    ``output.non_tensor_batch`` (see the module docstring), then drop those rows."""
    if mode not in MODES:
        raise ValueError(f"dense_mode must be one of {MODES}, got {mode!r}")
    nt = output.non_tensor_batch
    if OUTCOME_KEY not in nt:
        raise ValueError("no rewardkit dense rows in this batch: set reward.reward_manager.name="
                         "RewardkitDenseRewardManager (source=importlib, module.path=pkg://rewardkit.integrations."
                         "verl_dense); `rewardkit verl-config --mode dense` prints the overrides")
    responses = output.batch["responses"]
    n, width = responses.shape
    prompt_len = output.batch["prompts"].shape[-1]
    lengths = output.batch["attention_mask"][:, prompt_len:].sum(dim=-1).tolist()
    parts = [_parts(nt, i) for i in range(n)]
    if mode == "dense":
        rows = [dense_row(list(parts[i].values()), float(nt[OUTCOME_KEY][i]), int(lengths[i]), width)
                for i in range(n)]
    else:
        if uids is None:
            uids = nt.get("uid")
        if uids is None or len(uids) != n:
            raise ValueError("process_supervision needs the prompt group of every response (verl's 'uid')")
        rows = process_supervision_rows(parts, [int(x) for x in lengths], list(uids), width, eps)
    scores = torch.tensor(rows, dtype=torch.float32, device=responses.device)
    valid = torch.arange(width, device=responses.device)[None, :] < torch.tensor(lengths, device=responses.device)[:, None]
    output.batch["rm_scores"] = scores * valid.to(scores.dtype)
    ours = [k for k in nt if k.startswith(PREFIX)]
    for k in ours:
        nt.pop(k)
    keys = output.meta_info.get("reward_extra_keys")
    if keys is not None:
        output.meta_info["reward_extra_keys"] = [k for k in keys if not k.startswith(PREFIX)]
    return output


class DenseAgentLoopManager(AgentLoopManager):
    """verl's agent-loop manager, with ``rm_scores`` rewritten per token after every rollout."""

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        output = await super().generate_sequences(prompts)
        kwargs = reward_kwargs_of(self.config)
        uids = output.non_tensor_batch.get("uid")
        if uids is None and len(prompts) == len(output):
            uids = prompts.non_tensor_batch.get("uid")  # the agent loop keeps the input order
        return apply_dense_rewards(output, kwargs.get("dense_mode", "dense"), uids,
                                   float(kwargs.get("dense_eps", 1e-4)))


@register_adv_est(ESTIMATOR)
def compute_process_supervision_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                                          config: Any = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``algorithm.adv_estimator=rewardkit_process_supervision``: the per-token advantages that
    :class:`DenseAgentLoopManager` wrote in ``process_supervision`` mode, masked; returns = advantages."""
    adv = token_level_rewards * response_mask
    return adv, adv
