"""Flow-GRPO on TRL's GRPOTrainer: the broadcast/advantage hook, planner backends, config presets.

How Flow-GRPO maps onto TRL 1.16 (see docs/methods/flowgrpo.md):

* rollouts: TRL's public ``rollout_func`` (:class:`~rewardkit_flowgrpo.rollout.FlowRollout`), with
  ``num_generations = G * T_max`` so every query gets G trajectories of T_max turn slots;
* rewards: ``flowgrpo.outcome`` through TRL's reward-function protocol (one judge call per trajectory);
* advantages: the ``flowgrpo.broadcast`` :class:`~rewardkit.trl.TrainerHook` replaces TRL's
  advantages (which would wrongly treat the G*T_max rows as one group) in ``after_rollout``,
  the core's public hook point;
* loss: TRL's own ``_compute_loss``; the Eq. 10 weights are folded into the advantages.

TRL internals touched here, each checked by :func:`check_flowgrpo_compat` (run at hook setup and
by a test, so a TRL upgrade that changes them fails loudly):

* ``GRPOTrainer._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, ...)``
  — the ``"trl"`` planner samples through it (transformers or vLLM, weights synced by TRL);
* ``trainer._metrics[mode][name]`` — the hook logs its group statistics there, like TRL's own metrics;
* ``rollout_func`` extra keys are merged into the rows (``inputs``) that TRL hands to rewards and hooks.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from rewardkit.trl import TrainerHook
from rewardkit_flowgrpo.advantages import LOSS_NORMS, NORMS, PRECISIONS, flow_advantages
from rewardkit_flowgrpo.agent import HFPlanner
from rewardkit_flowgrpo.reward import FlowOutcome
from rewardkit_flowgrpo.rollout import FlowRollout

log = logging.getLogger(__name__)

LOSS_TYPES = {"paper": ("grpo",), "token_mean": ("dapo", "bnpo")}


class FlowGRPOCompatError(RuntimeError):
    """The installed TRL no longer provides what the Flow-GRPO plugin relies on."""


def check_flowgrpo_compat(trainer_or_cls: Any) -> None:
    """Fail loudly when the TRL internals used by this plugin changed."""
    cls = trainer_or_cls if isinstance(trainer_or_cls, type) else type(trainer_or_cls)
    fn = getattr(cls, "_generate_single_turn", None)
    if fn is None:
        raise FlowGRPOCompatError(f"{cls.__name__}._generate_single_turn no longer exists; update "
                                  "rewardkit_flowgrpo.trainer.TRLPlanner for this TRL version (or use planner='hf')")
    params = list(inspect.signature(fn).parameters)
    if params[:5] != ["self", "prompt_ids", "images", "multimodal_fields", "num_generations"]:
        raise FlowGRPOCompatError(f"{cls.__name__}._generate_single_turn now takes {params}; update TRLPlanner")
    init = inspect.signature(cls.__init__).parameters
    if "rollout_func" not in init:
        raise FlowGRPOCompatError(f"{cls.__name__} no longer accepts rollout_func")
    if not isinstance(trainer_or_cls, type):
        metrics = getattr(trainer_or_cls, "_metrics", None)
        if not isinstance(metrics, dict) or "train" not in metrics:
            raise FlowGRPOCompatError("trainer._metrics is no longer a {'train': {...}, 'eval': {...}} dict; "
                                      "update FlowBroadcastHook._log")


# -- planner backends bound to a trainer ------------------------------------------------------
class TRLPlanner:
    """Sample planner turns through the trainer's own generation path (transformers or vLLM).

    Under several processes every rank must call generation the same number of times (vLLM server
    gathers prompts across ranks; ZeRO-3 gathers parameters), so ranks agree on whether another turn
    runs, and a rank without active trajectories generates for one dummy prompt it then drops.
    """

    def __init__(self, trainer: Any) -> None:
        check_flowgrpo_compat(trainer)
        self.trainer = trainer

    def keep_going(self, n_active: int) -> bool:
        acc = self.trainer.accelerator
        if acc.num_processes == 1:
            return n_active > 0
        import torch

        total = acc.reduce(torch.tensor([n_active], device=acc.device), reduction="sum")
        return int(total.item()) > 0

    def generate(self, prompt_ids: list[list[int]]):
        dummy = not prompt_ids
        if dummy:
            prompt_ids = [[self.trainer.processing_class.eos_token_id]]
        completion_ids, logprobs = self.trainer._generate_single_turn(prompt_ids, None, {}, 1)
        if dummy:
            return [], None
        return [list(c) for c in completion_ids], logprobs


def hf_planner_for(trainer: Any) -> HFPlanner:
    """An :class:`HFPlanner` on the trainer's (unwrapped) model with its sampling settings."""
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    tok = trainer.processing_class
    return HFPlanner(model, getattr(tok, "tokenizer", tok), max_new_tokens=args.max_completion_length,
                     temperature=args.temperature, top_p=args.top_p, top_k=args.top_k or 0)


# -- the hook -------------------------------------------------------------------------------
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
        self.reward: FlowOutcome | None = None
        self.totals = {"batches": 0, "groups": 0, "zero_std_groups": 0, "trajectories": 0, "turns": 0}
        self.last_result = None

    def setup(self, trainer: Any) -> None:
        check_flowgrpo_compat(trainer)
        loss_type = trainer.args.loss_type
        if loss_type not in LOSS_TYPES[self.loss_norm]:
            raise ValueError(f"flowgrpo.broadcast with loss_norm={self.loss_norm!r} needs GRPOConfig(loss_type="
                             f"{' or '.join(map(repr, LOSS_TYPES[self.loss_norm]))}), got {loss_type!r} "
                             "(rewardkit_flowgrpo.flowgrpo_grpo_kwargs sets it)")
        found = [f for f in trainer.reward_funcs if isinstance(f, FlowOutcome)]
        if len(found) != 1:
            raise ValueError(f"flowgrpo.broadcast needs exactly one flowgrpo.outcome reward among the trainer's "
                             f"reward_funcs, found {len(found)}")
        self.reward = found[0]
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
        values = self.reward.last_values if self.reward is not None else []
        if len(values) != n:
            raise RuntimeError(f"flowgrpo.outcome holds {len(values)} values for {n} rows; was it called on this batch?")
        try:
            col = {k: [row[k] for row in inputs] for k in ("flowgrpo_query_id", "flowgrpo_traj_id", "flowgrpo_is_pad",
                                                           "flowgrpo_num_turns", "flowgrpo_max_turns")}
        except KeyError as exc:
            raise RuntimeError(f"row lacks {exc}: TRL no longer merges rollout_func extra keys into the rows "
                               "(rewardkit_flowgrpo relies on it)") from exc
        if self.reward.last_columns.get("flowgrpo_traj_id") != col["flowgrpo_traj_id"]:
            raise RuntimeError("flowgrpo.outcome's last values are not aligned with this batch's rows")
        max_turns = col["flowgrpo_max_turns"][0]
        res = flow_advantages(values, col["flowgrpo_query_id"], col["flowgrpo_traj_id"], col["flowgrpo_is_pad"],
                              col["flowgrpo_num_turns"], max_turns, norm=self.norm, eps=self.eps,
                              unbiased=self.unbiased, loss_norm=self.loss_norm,
                              precision=self.precision)
        self.last_result = res
        old = output["advantages"]
        output["advantages"] = torch.tensor(res.scaled, dtype=old.dtype, device=old.device)

        trajs = {t: (k, v) for t, k, v in zip(col["flowgrpo_traj_id"], col["flowgrpo_num_turns"], values)}
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
        mode = "train" if trainer.model.training else "eval"
        self._log(trainer, mode, {
            "flowgrpo/zero_std_groups": zero, "flowgrpo/zero_std_frac": zero / max(groups, 1),
            "flowgrpo/success": succ / max(ntraj, 1), "flowgrpo/turns_mean": turns / max(ntraj, 1),
            "flowgrpo/pad_frac": 1 - real_rows / max(rows, 1),
        })
        return output

    @staticmethod
    def _log(trainer: Any, mode: str, values: dict[str, float]) -> None:
        for k, v in values.items():
            trainer._metrics[mode][k].append(float(v))

    def state_dict(self) -> dict[str, Any]:
        return {"totals": dict(self.totals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals.update(state.get("totals", {}))


# -- config presets -------------------------------------------------------------------------
def flowgrpo_grpo_kwargs(group_size: int = 8, max_turns: int = 3, *, queries_per_device: int = 1,
                         preset: str = "paper", loss_norm: str | None = None, **overrides: Any) -> dict[str, Any]:
    """GRPOConfig keyword arguments for Flow-GRPO.

    Always: ``num_generations = G * T_max`` and ``per_device_train_batch_size = queries_per_device *
    G * T_max`` (whole queries per rank). ``preset="paper"``: ``loss_type="grpo"`` (Eq. 10 with the
    hook's ``loss_norm="paper"``), symmetric ε = 0.2, β = 0.001, temperature 0.5. ``preset="code"``
    (AgentFlow's train/config.yaml on verl 0.5.0): ``loss_type="bnpo"`` (verl's ``token-mean``: a token
    mean per micro-batch divided by the accumulation steps; verl's micro-batches are 4 shuffled turn
    samples, TRL's are this rank's rows of whole queries), ε = 0.2 / 0.3 (clip-higher), dual-clip δ = 3,
    β = 0.001, temperature 0.7. Pass ``loss_type="dapo"`` for a token mean over the whole step.

    With ``steps_per_generation == gradient_accumulation_steps`` (TRL's default) and
    ``num_iterations=1`` the ratio is exactly 1 and clipping never acts; set
    ``steps_per_generation`` above ``gradient_accumulation_steps`` (verl runs ~8-12 updates per
    rollout batch) to reproduce the code's off-policy mini-batches.
    """
    if preset not in ("paper", "code"):
        raise ValueError("preset must be 'paper' or 'code'")
    loss_norm = loss_norm or ("paper" if preset == "paper" else "token_mean")
    rows = group_size * max_turns
    kw: dict[str, Any] = dict(num_generations=rows, per_device_train_batch_size=queries_per_device * rows,
                              beta=0.001, epsilon=0.2, scale_rewards="none",
                              loss_type="grpo" if loss_norm == "paper" else "bnpo")
    if preset == "paper":
        kw.update(temperature=0.5)
    else:
        kw.update(epsilon_high=0.3, delta=3.0, temperature=0.7)
    kw.update(overrides)
    return kw
