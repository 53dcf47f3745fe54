"""S²R's trainer hooks: ``s2r.process_advantage`` and ``s2r.outcome_rloo`` (the arithmetic lives in
:mod:`rewardkit_s2r.advantages`).

``s2r.process_advantage`` (paper §2.3.2, Eq. 4–5): every action a_t (attempt or verification)
gets ``A(a_t) = w_t · (R(a_t) − b(c_t))`` on all its tokens, where the *reward context* ``c_t`` is
the sequence of rewards of the previous actions ("", "R-1", "R-1V1", ...) and ``b`` is

* ``baseline="group"`` (paper, default): the mean reward of all actions of the current rollout
  batch — gathered over every process — that share the context;
* ``baseline="running"`` (released code): running sums over the whole run (all processes, all
  earlier batches), used only once a context has ``min_count`` (10) observations, else 0; the
  current batch is added after use; only some contexts are tracked: those of at most
  ``max_context_actions`` previous actions, or exactly the code's 164-context whitelist with
  ``context_keys="code"`` (:data:`rewardkit_s2r.code.CODE_CONTEXT_KEYS`).

``w_t`` is 2 for the code's bonus cases when the ``s2r.process`` reward has ``bonus=True``, else 1.
The last action of a truncated response (``truncated_penalty=True``) gets a flat −1 on its tokens
instead; its reward context and the table keep its real reward, as in the code.

``split="code"`` takes the ``s2r.process`` reward in ``mode="code"``: token values are exactly the
released trainer's ``token_rewards`` (``w·(R − b)`` per piece, 0 on marker tokens, −1 on the last
piece of a truncated response), and a row that fails the code's token reconstruction check gets 0.
The table (sum, count per context) is synchronised across processes by gathering every
process's (context, reward) pairs, so every rank applies identical updates; it is saved in each
checkpoint (``state_dict``) and restored on resume.

``s2r.outcome_rloo``: GRPOTrainer with ``scale_rewards="none"`` centres rewards on the group
mean, ``r − mean``; RLOO's leave-one-out advantage is ``M/(M−1) · (r − mean)``. The hook applies
that factor, so GRPOTrainer reproduces S²R's outcome-level RLOO advantage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardkit import token_char_ends
from rewardkit.trl import TrainerHook
from rewardkit_s2r.advantages import (
    BaselineTable,
    action_advantages,
    action_token_bounds,
    code_token_values,
    group_baselines,
    tokens_in,
)
from rewardkit_s2r.code import CODE_CONTEXT_KEYS, CodeRollout
from rewardkit_s2r.parse import split_token_ids
from rewardkit_s2r.rewards import SCORED, S2RProcessReward
from rewardkit_s2r.scoring import ScoredTrajectory


class S2RProcessAdvantageHook(TrainerHook):
    """Token-level advantages of S²R's process-level RL from the ``s2r.process`` reward.

    Args:
        baseline: ``"group"`` (paper: mean over the batch's actions with the same reward context)
            or ``"running"`` (released code: global running table, used after ``min_count``).
        min_count: observations a context needs before its running baseline is used (code: 10).
        max_context_actions: longest tracked context in the running table (code's whitelist: ~8).
        markers: ``"action"`` (marker tokens take the advantage of the action they open) or
            ``"zero"`` (the code's zero-reward "part 0").
        context_keys: ``"code"`` tracks exactly the released whitelist of contexts in the running
            table (replaces ``max_context_actions``); a collection of strings tracks those.
        split: ``"text"`` (parse the text, map spans to tokens; default), ``"token_ids"`` (the
            text parse's rewards placed on the segments of the marker-id split; a row where the two
            splits disagree gets advantage 0, logged as ``s2r.process_advantage/split_failures``), or
            ``"code"`` (the released trainer's token rewards from an ``s2r.process`` reward in
            ``mode="code"``; a row failing the code's token reconstruction check gets 0, counted).
        weighting: ``"token"`` (every token carries its action's advantage) or ``"action"``
            (tokens scaled by ``L / (n_actions · |action|)``; with ``loss_type="grpo"`` each action
            then weighs the same in a sequence, as in the code's mean over segments).
        reward: the name of the ``s2r.process`` reward among the trainer's reward functions
            (default: the only ``s2r.process`` reward).

    Logged per rollout (``trainer.state.log_history``): ``s2r.process_advantage/rows``,
    ``/split_failures`` (rows given advantage 0), ``/contexts`` (distinct reward contexts of the
    gathered batch) and ``/mean_abs_action_advantage``.
    """

    name = "s2r.process_advantage"

    def __init__(self, *, baseline: str = "group", min_count: int = 10, max_context_actions: int | None = 8,
                 context_keys: str | Sequence[str] | None = None, markers: str = "action", split: str = "text",
                 weighting: str = "token", reward: str | None = None) -> None:
        if baseline not in ("group", "running"):
            raise ValueError(f"baseline must be 'group' (paper) or 'running' (code), got {baseline!r}")
        if markers not in ("action", "zero"):
            raise ValueError(f"markers must be 'action' or 'zero', got {markers!r}")
        if split not in ("text", "token_ids", "code"):
            raise ValueError(f"split must be 'text', 'token_ids' or 'code', got {split!r}")
        if weighting not in ("token", "action"):
            raise ValueError(f"weighting must be 'token' or 'action', got {weighting!r}")
        self.baseline = baseline
        self.markers = markers
        self.split = split
        self.weighting = weighting
        self.reward_name = reward
        if context_keys == "code":
            keys: frozenset[str] | None = CODE_CONTEXT_KEYS
        elif isinstance(context_keys, str):
            raise ValueError(f"context_keys must be 'code', a collection of contexts or None, got {context_keys!r}")
        else:
            keys = None if context_keys is None else frozenset(context_keys)
        self.table = BaselineTable(min_count, max_context_actions, keys)
        self.rollouts = 0
        self._reward: S2RProcessReward | None = None
        self._tokenizer: Any = None

    # -- wiring --------------------------------------------------------------------------------
    def setup(self, trainer: Any) -> None:
        names = None if self.reward_name is None else [self.reward_name]
        (self._reward,) = self.find_rewards(trainer, S2RProcessReward, names=names, count=1)
        if (self.split == "code") != (self._reward.mode == "code"):
            raise ValueError(f"{self.name}: split='code' goes with the s2r.process reward in mode='code' (and only "
                             f"with it); got split={self.split!r} and mode={self._reward.mode!r}")
        try:
            from trl import RLOOTrainer
        except ImportError:  # pragma: no cover
            RLOOTrainer = ()
        if isinstance(trainer, RLOOTrainer):
            raise ValueError(f"{self.name} produces per-token advantages, which RLOOTrainer's sequence-level loss "
                             "cannot take; use GRPOTrainer (settings: rewardkit_s2r.config.grpo_kwargs())")
        if self._reward.eos_token_ids is None:
            self._reward.eos_token_ids = [int(t) for t in getattr(trainer, "eos_token_ids", None)
                                          or [trainer.processing_class.eos_token_id]]
        self._tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        if self._reward.mode == "code" and self._reward.tokenizer is None:
            self._reward.tokenizer = self._tokenizer

    def _gather(self, trainer: Any, pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
        accelerator = getattr(trainer, "accelerator", None)
        if accelerator is None or accelerator.num_processes == 1:
            return pairs
        from accelerate.utils import gather_object

        # one list per process, in rank order: every rank sees the same pairs and updates its table alike
        return [tuple(p) for chunk in gather_object([pairs]) for p in chunk]

    # -- baselines -----------------------------------------------------------------------------
    def baselines(self, all_pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
        """b(context) of every context in the batch's (gathered) pairs, as :meth:`compute` uses them
        (running baseline: the table before this batch is added)."""
        if self.baseline == "group":
            return group_baselines(all_pairs)
        return {c: self.table.baseline(c) for c, _ in all_pairs}

    def compute(self, details: Sequence[Any], all_pairs: Sequence[tuple[str, float]], *,
                update: bool = True) -> list[list[float] | None]:
        """Per-action advantages of the local rows (``split="code"``: the code's per-token values)
        given the batch's (gathered) context pairs; adds ``all_pairs`` to the running table unless
        ``update=False`` (evaluation rollouts)."""
        if self.baseline == "group":
            baselines = group_baselines(all_pairs)
            get: Any = lambda c: baselines.get(c, 0.0)  # noqa: E731
        else:
            get = self.table.baseline
        adv = code_token_values(details, get) if self.split == "code" else action_advantages(details, get)
        if update:
            self.table.update(all_pairs)
            self.rollouts += 1
        return adv

    # -- the hook -------------------------------------------------------------------------------
    def after_rollout(self, trainer: Any, inputs: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
        import torch

        if self._reward is None:
            self.setup(trainer)
        details = self._reward.last_call.detail(SCORED)
        completion_ids = output["completion_ids"]
        mask = output["completion_mask"]
        B, T = completion_ids.shape
        if len(details) != B:
            raise RuntimeError(f"{self.name}: the s2r.process reward scored {len(details)} rows but the rollout has "
                               f"{B}; the reward must be called on the same batch (is it in reward_funcs?)")
        local_pairs = [(c, r) for s in details if s is not None for c, r in zip(s.contexts, s.rewards)]
        all_pairs = self._gather(trainer, local_pairs)
        training = bool(getattr(getattr(trainer, "model", None), "training", True))
        adv_actions = self.compute(details, all_pairs, update=training)

        adv = torch.zeros((B, T), dtype=torch.float32, device=completion_ids.device)
        failures = 0
        ids_cpu = completion_ids.cpu()
        lengths = mask.sum(dim=1).cpu().tolist()
        for i, (s, a) in enumerate(zip(details, adv_actions)):
            if s is None or a is None:
                continue
            n = int(lengths[i]) or T
            ids = ids_cpu[i, :n].tolist()
            row = self._code_row(s, a, n) if self.split == "code" else self._row(s, a, ids)
            if row is None:
                failures += 1
                continue
            adv[i, :n] = torch.tensor(row, dtype=torch.float32, device=adv.device)
        output["advantages"] = adv
        self.log_metrics(trainer, {
            f"{self.name}/rows": float(B),
            f"{self.name}/split_failures": float(failures),
            f"{self.name}/contexts": float(len({c for c, _ in all_pairs})),
            f"{self.name}/mean_abs_action_advantage": (sum(abs(x) for a in adv_actions if a for x in a)
                                                       / max(1, sum(len(a) for a in adv_actions if a)))})
        return output

    def _code_row(self, r: CodeRollout, token_values: list[float], n: int) -> list[float] | None:
        """The code's token rewards on the completion's first tokens (EOS and later: 0); with
        ``weighting="action"`` each piece (all marker tokens together form one) weighs the same."""
        if not r.valid:
            return None
        values = [0.0] * n
        m = min(n, len(token_values))
        values[:m] = token_values[:m]
        if self.weighting == "action":
            parts: list[list[int]] = []
            markers: list[int] = []
            pos = 0
            for seg in r.segments:
                span = [t for t in range(pos, pos + len(seg.tokens)) if t < n]
                pos += len(seg.tokens)
                if seg.kind == "marker":
                    markers += span
                elif span:
                    parts.append(span)
            if markers:
                parts.append(markers)
            for span in parts:
                scale = n / (len(parts) * len(span))
                for t in span:
                    values[t] *= scale
        return values

    def _row(self, s: ScoredTrajectory, adv: list[float], ids: list[int]) -> list[float] | None:
        n = len(ids)
        text = s.trajectory.text
        actions = s.trajectory.actions
        values = [0.0] * n
        char_ends = token_char_ends(ids, self._tokenizer, text)
        if self.split == "token_ids":
            segs = split_token_ids(ids, self._tokenizer, self._reward.markers)
            content = [g for g in segs if g[0] != "marker" and g[2] > g[1]]
            nonempty = [k for k, act in enumerate(actions) if act.end > act.body_start or act.kind == "verify"]
            # the token split must cut where the text parse does: every marker starts an action
            marker_chars = [char_ends[g[1] - 1] if g[1] > 0 else 0 for g in segs if g[0] == "marker"]
            if len(content) != len(nonempty) or marker_chars != [a.start for a in actions[1:]]:
                return None
            pairs = list(zip(nonempty, [(g[1], g[2]) for g in content]))
        else:
            bounds = action_token_bounds([a.span for a in actions], char_ends, n)
            pairs = list(enumerate(bounds))
            if self.markers == "zero":
                marker_tokens = [tokens_in(char_ends, a.start, a.body_start) for a in actions]
        used = [(k, lo, hi) for k, (lo, hi) in pairs if hi > lo]
        n_actions = len(used)
        for k, lo, hi in used:
            scale = n / (n_actions * (hi - lo)) if self.weighting == "action" else 1.0
            for t in range(lo, hi):
                values[t] = adv[k] * scale
            if self.split == "text" and self.markers == "zero":
                mlo, mhi = marker_tokens[k]
                for t in range(max(mlo, lo), min(mhi, hi)):
                    values[t] = 0.0
        return values

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table.state_dict(), "rollouts": self.rollouts, "baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table.load_state_dict(state["table"])
        self.rollouts = int(state.get("rollouts", 0))


class S2ROutcomeRLOOHook(TrainerHook):
    """Turn GRPOTrainer's centred advantages (``scale_rewards="none"``) into RLOO's leave-one-out
    advantages: ``A = M/(M−1) · (r − mean_group(r)) = r − mean of the other M−1 rewards``."""

    name = "s2r.outcome_rloo"

    def setup(self, trainer: Any) -> None:
        scale = getattr(trainer, "scale_rewards", None)
        if scale is not None and scale not in ("none", False):
            raise ValueError(f"{self.name} needs GRPOConfig(scale_rewards='none') (got {scale!r}): RLOO "
                             "does not divide by the group std")
        if getattr(trainer, "multi_objective_aggregation", "sum_then_normalize") != "sum_then_normalize":
            raise ValueError(f"{self.name} needs multi_objective_aggregation='sum_then_normalize'")
        if int(getattr(trainer, "num_generations", 2)) < 2:
            raise ValueError(f"{self.name} needs num_generations >= 2")

    def after_rollout(self, trainer: Any, inputs: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
        m = int(trainer.num_generations)
        output["advantages"] = output["advantages"] * (m / (m - 1))
        return output
