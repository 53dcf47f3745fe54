"""``flowgrpo.broadcast``: the Flow-GRPO advantage as a rewardkit trainer hook on TRL's GRPOTrainer.

How Flow-GRPO maps onto TRL 1.16 (see docs/methods/flowgrpo.md):

* rollouts: TRL's public ``rollout_func`` (:class:`~rewardkit_flowgrpo.rollout.FlowRollout`), with
  ``num_generations = G * T_max`` so every query gets G trajectories of T_max turn slots;
* rewards: ``flowgrpo.outcome`` through TRL's reward-function protocol (one judge call per trajectory);
* advantages: :class:`FlowBroadcastHook` replaces TRL's advantages (which would wrongly treat the
  G*T_max rows as one group) in ``after_rollout``, the core's public hook point;
* loss: TRL's own loss; the Eq. 10 weights are folded into the advantages.

The hook reads the reward's values from ``reward.last_call`` (checked against its rows' trajectory
ids), and the rows' ``flowgrpo_*`` columns, which TRL merges in from the ``rollout_func`` extra keys.
Its statistics reach the trainer's logs through ``TrainerHook.log_metrics``.
"""

from __future__ import annotations

import logging
from typing import Any

from rewardkit.trl import TrainerHook
from rewardkit_flowgrpo.advantages import LOSS_NORMS, NORMS, PRECISIONS, flow_advantages
from rewardkit_flowgrpo.rewards import TRAJ_ID, FlowOutcomeReward
from rewardkit_flowgrpo.rollout import FlowRollout

log = logging.getLogger(__name__)

LOSS_TYPES = {"paper": ("grpo",), "token_mean": ("dapo", "bnpo")}
ROW_COLUMNS = ("flowgrpo_query_id", TRAJ_ID, "flowgrpo_is_pad", "flowgrpo_num_turns", "flowgrpo_max_turns")


class FlowBroadcastHook(TrainerHook):
    """Broadcast each trajectory's outcome to its planner turns and set Flow-GRPO advantages.

    Args:
        norm: ``"trajectory"`` (paper Eq. 7, default) or ``"turn_pooled"`` (released code).
        eps: added to the std; None = 0 for ``trajectory`` (paper), 1e-6 for ``turn_pooled`` (verl).
        loss_norm: ``"paper"`` (Eq. 10; needs ``loss_type="grpo"``) or ``"token_mean"`` (code;
            ``loss_type="dapo"`` or ``"bnpo"``).
        unbiased: Bessel-corrected std (torch/verl default).
        precision: ``"float64"`` (default) or ``"bf16"``: with ``norm="turn_pooled"``, the released
            numbers bit for bit (AgentFlow stores rewards as bfloat16, so verl's statistics are bfloat16).
    """

    name = "flowgrpo.broadcast"

    def __init__(self, *, norm: str = "trajectory", eps: float | None = None, loss_norm: str = "paper",
                 unbiased: bool = True, precision: str = "float64") -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if loss_norm not in LOSS_NORMS:
            raise ValueError(f"loss_norm must be one of {LOSS_NORMS}, got {loss_norm!r}")
        self.norm = norm
        self.eps = eps
        self.loss_norm = loss_norm
        self.unbiased = unbiased
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bf16" and norm != "turn_pooled":
            raise ValueError("precision='bf16' reproduces the released code and needs norm='turn_pooled'")
        self.precision = precision
        self.reward: FlowOutcomeReward | None = None
        self.totals = {"batches": 0, "groups": 0, "zero_std_groups": 0, "trajectories": 0, "turns": 0}

    def setup(self, trainer: Any) -> None:
        loss_type = trainer.args.loss_type
        if loss_type not in LOSS_TYPES[self.loss_norm]:
            raise ValueError(f"flowgrpo.broadcast with loss_norm={self.loss_norm!r} needs GRPOConfig(loss_type="
                             f"{' or '.join(map(repr, LOSS_TYPES[self.loss_norm]))}), got {loss_type!r} "
                             "(rewardkit_flowgrpo.grpo_kwargs sets it)")
        self.reward = self.find_rewards(trainer, FlowOutcomeReward, count=1)[0]
        others = [getattr(f, "__name__", type(f).__name__) for f in trainer.reward_funcs if f is not self.reward]
        if others:
            log.warning("flowgrpo.broadcast: the Flow-GRPO advantage uses only flowgrpo.outcome; rewards %s are "
                        "logged by TRL but do not enter the advantage", others)
        if not isinstance(getattr(trainer, "rollout_func", None), FlowRollout):
            raise ValueError("flowgrpo.broadcast needs GRPOTrainer(rollout_func=FlowRollout(...))")
        ng = trainer.args.num_generations
        expected = trainer.rollout_func.rows_per_query
        if ng != expected:
            raise ValueError(f"num_generations={ng} but the rollout makes G*T_max={expected} rows per query")

    def after_rollout(self, trainer: Any, inputs: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
        import torch

        n = len(inputs)
        record = self.reward.last_call  # setup() found the reward
        if len(record) != n:
            raise RuntimeError(f"flowgrpo.outcome holds {len(record)} values for {n} rows; was it called on this "
                               "batch?")
        values = record.values
        try:
            col = {k: [row[k] for row in inputs] for k in ROW_COLUMNS}
        except KeyError as exc:
            raise RuntimeError(f"row lacks {exc}: TRL no longer merges rollout_func extra keys into the rows "
                               "(rewardkit_flowgrpo relies on it)") from exc
        if record.detail(TRAJ_ID) != col[TRAJ_ID]:
            raise RuntimeError("flowgrpo.outcome's last values are not aligned with this batch's rows")
        max_turns = col["flowgrpo_max_turns"][0]
        res = flow_advantages(values, col["flowgrpo_query_id"], col[TRAJ_ID], col["flowgrpo_is_pad"],
                              col["flowgrpo_num_turns"], max_turns, norm=self.norm, eps=self.eps,
                              unbiased=self.unbiased, loss_norm=self.loss_norm,
                              precision=self.precision)
        old = output["advantages"]
        output["advantages"] = torch.tensor(res.scaled, dtype=old.dtype, device=old.device)

        trajs = {t: (k, v) for t, k, v in zip(col[TRAJ_ID], col["flowgrpo_num_turns"], values)}
        real = sum(not p for p in col["flowgrpo_is_pad"])
        local = [res.num_groups, res.zero_std_groups, len(trajs), sum(v for _, v in trajs.values()),
                 sum(k for k, _ in trajs.values()), real, n]
        acc = trainer.accelerator
        stats = acc.reduce(torch.tensor(local, dtype=torch.float64, device=acc.device), reduction="sum").tolist()
        groups, zero, ntraj, succ, turns, real_rows, rows = stats
        self.totals["batches"] += 1
        self.totals["groups"] += int(groups)
        self.totals["zero_std_groups"] += int(zero)
        self.totals["trajectories"] += int(ntraj)
        self.totals["turns"] += int(turns)
        self.log_metrics(trainer, {
            "flowgrpo/zero_std_groups": zero, "flowgrpo/zero_std_frac": zero / max(groups, 1),
            "flowgrpo/success": succ / max(ntraj, 1), "flowgrpo/turns_mean": turns / max(ntraj, 1),
            "flowgrpo/pad_frac": 1 - real_rows / max(rows, 1),
        })
        return output

    def state_dict(self) -> dict[str, Any]:
        return {"totals": dict(self.totals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals.update(state.get("totals", {}))
