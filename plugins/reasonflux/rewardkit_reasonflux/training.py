"""Training a ReasonFlux PRM: L = λ_step · (1/T) Σ_t MSE(R(s_t), r_t^step) + λ_traj · MSE(R(x, y), r^final).

The PRM is a core token-classification PRM (``AutoModelForTokenClassification``, the
``step_tag`` interface of :mod:`rewardkit_reasonflux.prm`), laid out exactly as it is scored:
question in the chat template's user turn, then the thinking steps and the response, each
followed by ``<extra_0>``. The prediction at a tag is softmax(logits)[positive_label]; thinking
tags regress onto the step targets, the response's (last) tag onto the trajectory target.

Targets come from :func:`build_targets` (the step reward ``reasonflux.step`` and the trajectory
reward ``reasonflux.trajectory``, or any rewards with the same protocol).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewardkit import PRMTrainer, PRMTrainingConfig
from rewardkit_reasonflux.prm import DEFAULT_SYSTEM, ChatPrompt


@dataclass
class ReasonFluxPRMConfig(PRMTrainingConfig):
    """The core training options with ReasonFlux's defaults (constant learning rate, AdamW's weight
    decay 0.01), plus the loss weights and the PRM's prompt layout."""

    lambda_step: float = 1.0
    lambda_traj: float = 1.0
    epochs: int = 10
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    schedule: str = "constant"
    step_tag: str = "<extra_0>"
    system_prompt: str | None = DEFAULT_SYSTEM
    positive_label: int = 1


def _thinking_list(rec: dict[str, Any]) -> list[str]:
    th = rec.get("thinking", [])
    if isinstance(th, str):
        from rewardkit import split_steps

        return [s.text for s in split_steps(th)]
    return [str(s) for s in th]


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return float("nan")
    return sxy / math.sqrt(sxx * syy)


def build_targets(records: Sequence[dict[str, Any]], step_reward: Any, trajectory_reward: Any = None, *,
                  transform: str = "minmax", gold_column: str = "solution") -> list[dict[str, Any]]:
    """Add ``step_targets`` (one per thinking step) and ``trajectory_target`` to each record.

    ``records`` hold ``question``, ``thinking`` (list of steps or text) and ``response`` (plus the
    gold column for the trajectory reward). ``step_reward`` is a ReasonFlux process reward (e.g.
    ``reasonflux.step``); ``trajectory_reward`` a reward returning one value in [0, 1] (e.g.
    ``reasonflux.trajectory``), or None to keep an existing ``trajectory_target``.
    ``transform`` maps the step values into the PRM's (0, 1) output range: ``"minmax"`` (over the
    whole set, order-preserving), ``"sigmoid"``, ``"clip"`` (to [0, 1]) or ``"none"``.
    Records whose steps did not all get a value are dropped (the count is in the result's length).
    """
    prompts = [r["question"] for r in records]
    completions = ["<think>" + "\n\n".join(_thinking_list(r)) + "</think>" + r["response"] for r in records]
    steps = step_reward.score_steps(prompts, completions)
    traj: list[float | None]
    if trajectory_reward is not None:
        traj = trajectory_reward(prompts, completions, **{gold_column: [r.get(gold_column) for r in records]})
    else:
        traj = [r.get("trajectory_target") for r in records]
    out = []
    for rec, s, t in zip(records, steps, traj):
        if s is None or t is None or len(s.scores) != len(_thinking_list(rec)) or not s.scores:
            continue
        out.append({**rec, "thinking": _thinking_list(rec), "step_targets": list(s.scores),
                    "trajectory_target": float(t)})
    flat = [v for r in out for v in r["step_targets"]]
    if transform == "minmax" and flat:
        lo, hi = min(flat), max(flat)
        span = (hi - lo) or 1.0
        for r in out:
            r["step_targets"] = [(v - lo) / span for v in r["step_targets"]]
    elif transform == "sigmoid":
        for r in out:
            r["step_targets"] = [1 / (1 + math.exp(-v)) for v in r["step_targets"]]
    elif transform == "clip":
        for r in out:
            r["step_targets"] = [min(1.0, max(0.0, v)) for v in r["step_targets"]]
    elif transform != "none":
        raise ValueError(f"transform must be 'minmax', 'sigmoid', 'clip' or 'none', got {transform!r}")
    return out


class ReasonFluxPRMTrainer(PRMTrainer):
    """Fine-tunes a token-classification PRM with the ReasonFlux joint MSE loss: the core
    :class:`rewardkit.PRMTrainer` loop with ReasonFlux's encoding, loss and held-out metrics.

    >>> trainer = ReasonFluxPRMTrainer("path/to/token-cls-prm", ReasonFluxPRMConfig(epochs=5))  # doctest: +SKIP
    >>> history = trainer.train(train_records, eval_records)                                   # doctest: +SKIP
    """

    def __init__(self, model: Any, config: ReasonFluxPRMConfig | None = None) -> None:
        from rewardkit.prm import TaggedScorer

        cfg = config or ReasonFluxPRMConfig()
        ref = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", None)
        if not ref:
            raise ValueError("pass the PRM as a path (its tokenizer and chat template are read from it)")
        self.chat = ChatPrompt(str(ref), cfg.system_prompt)
        scorer = TaggedScorer(model, head="token_cls", step_tag=cfg.step_tag, step_separator="",
                              prompt_template=self.chat, positive_label=cfg.positive_label,
                              max_length=cfg.max_length, add_bos=False,
                              # trained in this process alone: never handed to DeepSpeed
                              prepare=False)
        super().__init__(scorer, cfg)
        self.config: ReasonFluxPRMConfig = cfg

    def encode(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Token ids, tag positions and targets for each record; too-long ones are dropped."""
        out = []
        for rec in records:
            thinking = _thinking_list(rec)
            targets = list(rec.get("step_targets", []))
            if len(targets) != len(thinking):
                raise ValueError(f"record has {len(thinking)} thinking steps but {len(targets)} step_targets")
            ids, positions, _ = self.scorer.encode(rec["question"], [*thinking, rec["response"]])
            ids = ids[:positions[-1] + 1]
            if len(ids) > self.config.max_length:
                continue
            out.append({"input_ids": ids, "step_pos": positions[:-1], "traj_pos": positions[-1],
                        "step_targets": targets, "traj_target": float(rec["trajectory_target"])})
        return out

    def _probs(self, logits: Any):
        import torch

        return torch.softmax(logits.float(), dim=-1)[..., self.config.positive_label]

    def loss(self, batch: Sequence[dict[str, Any]]):
        """(total, step term, trajectory term) for a batch."""
        total, terms = self.compute_loss(batch, self.forward(batch))
        return total, terms["step_loss"], terms["traj_loss"]

    def compute_loss(self, batch: Sequence[dict[str, Any]], logits: Any):
        """(total, {"step_loss", "traj_loss"}); the step term averages over each sample's T steps
        first (the paper's 1/T Σ_t), then over samples that have steps."""
        import torch

        probs = self._probs(logits)
        step_terms, traj_terms = [], []
        for i, b in enumerate(batch):
            if b["step_pos"]:
                pred = probs[i, b["step_pos"]]
                tgt = torch.tensor(b["step_targets"], dtype=pred.dtype, device=pred.device)
                step_terms.append(((pred - tgt) ** 2).mean())
            traj_terms.append((probs[i, b["traj_pos"]] - b["traj_target"]) ** 2)
        step = torch.stack(step_terms).mean() if step_terms else probs.sum() * 0.0
        traj = torch.stack(traj_terms).mean()
        total = self.config.lambda_step * step + self.config.lambda_traj * traj
        return total, {"step_loss": step, "traj_loss": traj}

    def epoch_stats(self) -> dict[str, float]:
        return {}

    def predict(self, records: Sequence[dict[str, Any]]) -> list[tuple[list[float], float]]:
        """Predicted (step scores, trajectory score) per record."""
        import torch

        examples = self.encode(records)
        self.scorer.model.eval()
        out = []
        with torch.inference_mode():
            for a in range(0, len(examples), self.config.batch_size):
                chunk = examples[a:a + self.config.batch_size]
                probs = self._probs(self.forward(chunk))
                for i, b in enumerate(chunk):
                    out.append((probs[i, b["step_pos"]].tolist(), float(probs[i, b["traj_pos"]])))
        return out

    def evaluate(self, records: Sequence[dict[str, Any]]) -> dict[str, float]:
        """Pearson correlation and MSE between predicted and target step / trajectory scores."""
        examples = self.encode(records)
        preds = self.predict(records)
        ps, ts, pt, tt = [], [], [], []
        for b, (steps, traj) in zip(examples, preds):
            ps += steps
            ts += b["step_targets"]
            pt.append(traj)
            tt.append(b["traj_target"])
        return {"step_corr": pearson(ps, ts), "traj_corr": pearson(pt, tt),
                "step_mse": sum((p - t) ** 2 for p, t in zip(ps, ts)) / max(len(ps), 1),
                "traj_mse": sum((p - t) ** 2 for p, t in zip(pt, tt)) / max(len(pt), 1)}

    def metadata(self) -> dict[str, Any]:
        return {"step_tag": self.config.step_tag, "positive_label": self.config.positive_label,
                "interface": "step_tag"}
