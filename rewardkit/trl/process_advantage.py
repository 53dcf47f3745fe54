"""``process_advantage``: per-token advantages from per-step process rewards on GRPOTrainer.

Modes:

``process_supervision`` (DeepSeekMath §4.1.3) — all step rewards of a group (the
    ``num_generations`` completions of one prompt, wherever they live across processes) are
    normalised by that group's mean and std: ``r~ = (r - mean) / (std + eps)``; the advantage of a
    token is the sum of the normalised rewards of the steps that end at or after it. Outcome
    advantages are replaced.
``outcome_plus_process`` — TRL's outcome advantage (per sequence) plus ``coef`` × the process term
    above (per token).

Step spans (characters of the completion text) map onto completion tokens through the tokenizer's
offsets (:func:`rewardkit.trajectory.token_char_ends` / :func:`~rewardkit.trajectory.step_token_ends`).
A step ends on the token that holds its last character. Tokens after the last step (trailing
whitespace, EOS) get the last step's value; padding gets 0. Completions without step scores (no
steps, PRM could not score them) get a process term of 0 and are counted.

Several process rewards in ``reward_funcs`` are combined with the trainer's ``reward_weights``.
The result is a ``(B, T)`` tensor aligned with ``output["completion_ids"]``; TRL's GRPO
``_compute_loss`` consumes it as is. RLOOTrainer's loss is sequence-level (one importance ratio
per completion times a ``(B,)`` advantage), so per-token advantages cannot enter it; with
``sequence_level=True`` the per-token advantages are averaged over each completion's tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rewardkit.reward import ProcessReward, StepScores
from rewardkit.trajectory import clean_prefix_len, offset_char_ends, step_token_ends, token_char_ends
from rewardkit.trl.hooks import TrainerHook

MODES = ("process_supervision", "outcome_plus_process")
NORMALIZE = ("group", "none")


def token_advantages(step_values: Sequence[float], step_ends: Sequence[int], length: int, width: int) -> list[float]:
    """Per-token process advantage of one completion.

    ``step_values[k]`` is step k's (normalised) reward, ``step_ends[k]`` the exclusive token index
    where it ends, ``length`` the number of real (unpadded) completion tokens, ``width`` the padded
    row width. Token t gets ``sum(step_values[k] for k with step_ends[k] - 1 >= t)``; tokens at or
    after the last step's end get the last step's value; padding gets 0.
    """
    out = [0.0] * width
    if not step_values or length <= 0:
        return out
    at = [0.0] * (length + 1)
    for v, e in zip(step_values, step_ends):
        e = min(max(int(e), 1), length)
        at[e - 1] += float(v)
    run = 0.0
    for t in range(length - 1, -1, -1):
        run += at[t]
        out[t] = run
    # steps come in order, so the last step ends last
    last_end = min(max(int(step_ends[-1]), 1), length)
    for t in range(last_end, length):
        out[t] = float(step_values[-1])
    return out


def batch_char_ends(rows: Sequence[Sequence[int]], texts: Sequence[str | None], tokenizer: Any) -> list[list[int]]:
    """:func:`rewardkit.trajectory.token_char_ends` for many rows at once (same result).

    One batched offsets call covers every row whose text re-encodes to its ids (the usual case);
    the others decode their prefixes in one batched call per row. Tokenizers without offsets
    fall back to ``token_char_ends`` row by row.
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    rows = [list(r) for r in rows]
    content = [[t for t in r if t not in special] for r in rows]
    missing = [i for i, t in enumerate(texts) if t is None]
    texts = list(texts)
    if missing:
        for i, t in zip(missing, tokenizer.batch_decode([rows[i] for i in missing], skip_special_tokens=True)):
            texts[i] = t
    try:
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        enc_ids = enc["input_ids"]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        return [token_char_ends(r, tokenizer, t) for r, t in zip(rows, texts)]
    out = []
    for i, r in enumerate(rows):
        if list(enc_ids[i]) == content[i]:
            content_ends = offset_char_ends(offsets[i])
        elif content[i]:
            prefixes = tokenizer.batch_decode([content[i][:k + 1] for k in range(len(content[i]))],
                                              skip_special_tokens=True)
            content_ends = [clean_prefix_len(p, texts[i]) for p in prefixes]
        else:
            content_ends = []
        ends, last, it = [], 0, iter(content_ends)
        for t in r:
            if t not in special:
                last = max(last, next(it))
            ends.append(last)
        out.append(ends)
    return out


def _tokenizer_of(trainer: Any):
    proc = getattr(trainer, "processing_class", None)
    return getattr(proc, "tokenizer", proc)


class ProcessAdvantageHook(TrainerHook):
    """Turn per-step process rewards into per-token advantages (see the module docstring).

    Args:
        mode: ``"process_supervision"`` (default) or ``"outcome_plus_process"``.
        coef: λ, the weight of the process term in ``outcome_plus_process``.
        rewards: names of the process rewards to use (default: every ``ProcessReward`` in the
            trainer's ``reward_funcs``).
        normalize: ``"group"`` (mean/std of the group's step rewards, the paper) or ``"none"``
            (group mean subtracted, no scaling).
        eps: added to the std, like TRL (1e-4).
        sequence_level: reduce the per-token advantages to their per-completion mean (RLOO).

    State (saved in checkpoints): counts of rollouts, completions, steps and completions without
    step scores, and running sums of the raw step rewards.
    """

    name = "prm.process_advantage"

    def __init__(self, mode: str = "process_supervision", coef: float = 1.0, rewards: Sequence[str] | None = None,
                 normalize: str = "group", eps: float = 1e-4, sequence_level: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown process_advantage mode {mode!r}; choose one of {MODES}")
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        self.mode = mode
        self.coef = float(coef)
        self.reward_names = None if rewards is None else list(rewards)
        self.normalize = normalize
        self.eps = float(eps)
        self.sequence_level = sequence_level
        self.state = self._empty_state()
        self.last_process_term = None  # (B, T) tensor of the last rollout, for inspection

    @staticmethod
    def _empty_state() -> dict[str, float]:
        return {"rollouts": 0, "completions": 0, "steps": 0, "missing": 0, "step_reward_sum": 0.0,
                "step_reward_sq_sum": 0.0}

    # -- setup ----------------------------------------------------------------------------------
    def _process_rewards(self, trainer: Any) -> list[ProcessReward]:
        return self.find_rewards(trainer, ProcessReward, names=self.reward_names)

    def setup(self, trainer: Any) -> None:
        if not self._process_rewards(trainer):
            raise ValueError("process_advantage needs a process reward (a rewardkit.ProcessReward such as "
                             "rewardkit.prm.PRMReward) among the trainer's reward_funcs")
        if type(trainer).__name__.endswith("RLOOTrainer") or _is_rloo(trainer):
            if not self.sequence_level:
                raise ValueError(
                    "RLOOTrainer's loss is sequence-level (exp(sum logp - sum old logp) times a (B,) advantage), "
                    "so per-token advantages cannot enter it; use GRPOTrainer, or pass sequence_level=True to "
                    "average each completion's per-token advantages into one value")

    # -- the work ---------------------------------------------------------------------------------
    def after_rollout(self, trainer: Any, inputs: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
        import torch

        completion_ids = output["completion_ids"]
        mask = output["completion_mask"]
        B, T = completion_ids.shape
        device = completion_ids.device
        lengths = mask.sum(dim=1).tolist()
        tokenizer = _tokenizer_of(trainer)
        accelerator = trainer.accelerator
        training = bool(getattr(trainer.model, "training", True))
        # TRL groups eval rollouts by num_generations_eval (mode = "train" if model.training else "eval")
        G = int(trainer.num_generations if training else getattr(trainer, "num_generations_eval",
                                                                   trainer.num_generations))
        process_rows = [[0.0] * T for _ in range(B)]
        has_any = [False] * B
        char_ends: list[list[int]] | None = None
        totals = [0.0, 0.0, 0.0]  # steps, sum, sq_sum (global)
        for reward in self._process_rewards(trainer):
            rows: list[StepScores | None] = list(reward.last_step_scores)
            if len(rows) != B:
                raise RuntimeError(f"process_advantage: reward {reward.name!r} holds {len(rows)} step-score rows for "
                                   f"{B} completions; it must be called on exactly this rollout's local rows")
            w = self.reward_weight(trainer, reward)
            # per-row sums of raw step rewards, gathered so group statistics are global
            local = torch.tensor([[float(len(s.scores)), float(sum(s.scores)), float(sum(x * x for x in s.scores))]
                                  if s is not None and s.scores else [0.0, 0.0, 0.0] for s in rows],
                                 dtype=torch.float64, device=device).view(B, 3)
            glob = accelerator.gather(local) if accelerator.num_processes > 1 else local
            grouped = glob.view(-1, G, 3).sum(dim=1).tolist()  # (groups, 3)
            stats = []
            for n, s1, s2 in grouped:
                mean = s1 / n if n > 0 else 0.0
                var = (s2 - n * mean * mean) / (n - 1) if n > 1 else 0.0
                stats.append((mean, math.sqrt(max(var, 0.0))))
            col = glob.sum(dim=0).tolist()
            totals = [totals[0] + col[0], totals[1] + col[1], totals[2] + col[2]]
            if char_ends is None and any(s is not None and s.scores for s in rows):
                texts = reward.last_call.texts  # the spans index into the texts the reward scored
                texts = list(texts) if len(texts) == B else [None] * B
                ids_rows = [completion_ids[i, :int(lengths[i])].tolist() for i in range(B)]
                char_ends = batch_char_ends(ids_rows, texts, tokenizer)
            start = accelerator.process_index * B
            for i, s in enumerate(rows):
                if s is None or not s.scores:
                    continue
                mean, std = stats[(start + i) // G]
                scale = (std + self.eps) if self.normalize == "group" else 1.0
                values = [(x - mean) / scale for x in s.scores]
                ends = step_token_ends(s.spans, char_ends[i])
                row = token_advantages(values, ends, int(lengths[i]), T)
                acc = process_rows[i]
                for t in range(int(lengths[i])):
                    acc[t] += w * row[t]
                has_any[i] = True
        process = torch.tensor(process_rows, dtype=torch.float32, device=device).view(B, T)
        process = process * mask.to(process.dtype)
        self.last_process_term = process.detach().clone()
        if self.mode == "process_supervision":
            adv = process
        else:
            outcome = output["advantages"]
            if outcome.dim() == 1:
                outcome = outcome.unsqueeze(1).expand(B, T)
            adv = (outcome.to(process.dtype) + self.coef * process) * mask.to(process.dtype)
        if self.sequence_level:
            adv = (adv * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        output["advantages"] = adv
        # state and metrics, identical on every rank (built from gathered numbers)
        missing_local = torch.tensor([float(B - sum(has_any))], dtype=torch.float64, device=device)
        missing = (accelerator.gather(missing_local).sum() if accelerator.num_processes > 1 else missing_local.sum())
        n_completions = B * accelerator.num_processes
        if training:  # eval rollouts get per-token advantages too, but do not move the training state
            self.state["rollouts"] += 1
            self.state["completions"] += n_completions
            self.state["steps"] += int(totals[0])
            self.state["missing"] += int(missing.item())
            self.state["step_reward_sum"] += float(totals[1])
            self.state["step_reward_sq_sum"] += float(totals[2])
        self.log_metrics(trainer, {
            "process_advantage/steps_per_completion": totals[0] / max(n_completions, 1),
            "process_advantage/step_reward_mean": totals[1] / max(totals[0], 1.0),
            "process_advantage/missing_frac": float(missing.item()) / max(n_completions, 1),
            "process_advantage/abs_process_term": float(process.abs().sum() / mask.sum().clamp(min=1)),
        })
        return output

    # -- checkpointed state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        fresh = self._empty_state()
        unknown = set(state) - set(fresh)
        if unknown:
            raise KeyError(f"process_advantage state has unknown keys {sorted(unknown)}")
        fresh.update(state)
        self.state = fresh


def _is_rloo(trainer: Any) -> bool:
    try:
        from trl import RLOOTrainer
    except ImportError:  # pragma: no cover
        return False
    return isinstance(trainer, RLOOTrainer)
