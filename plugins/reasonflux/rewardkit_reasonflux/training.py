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
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewardkit_reasonflux.prm import DEFAULT_SYSTEM, ChatPrompt


@dataclass
class ReasonFluxPRMConfig:
    lambda_step: float = 1.0
    lambda_traj: float = 1.0
    epochs: int = 10
    learning_rate: float = 2e-3
    batch_size: int = 16
    max_length: int = 1024
    seed: int = 0
    step_tag: str = "<extra_0>"
    system_prompt: str | None = DEFAULT_SYSTEM
    positive_label: int = 1
    output_dir: str | None = None


def _thinking_list(rec: dict[str, Any]) -> list[str]:
    th = rec.get("thinking", [])
    if isinstance(th, str):
        from rewardkit.trajectory import split_steps

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


class ReasonFluxPRMTrainer:
    """Fine-tunes a token-classification PRM with the ReasonFlux joint MSE loss.

    >>> trainer = ReasonFluxPRMTrainer("path/to/token-cls-prm", ReasonFluxPRMConfig(epochs=5))  # doctest: +SKIP
    >>> history = trainer.train(train_records, eval_records)                                   # doctest: +SKIP
    """

    def __init__(self, model: Any, config: ReasonFluxPRMConfig | None = None) -> None:
        from rewardkit.prm import TaggedScorer

        self.config = cfg = config or ReasonFluxPRMConfig()
        ref = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", None)
        if not ref:
            raise ValueError("pass the PRM as a path (its tokenizer and chat template are read from it)")
        self.chat = ChatPrompt(str(ref), cfg.system_prompt)
        self.scorer = TaggedScorer(model, head="token_cls", step_tag=cfg.step_tag, step_separator="",
                                   prompt_template=self.chat, positive_label=cfg.positive_label,
                                   max_length=cfg.max_length, add_bos=False,
                                   # trained in this process alone: never handed to DeepSpeed
                                   prepare=False)
        self.history: list[dict[str, float]] = []

    @property
    def model(self):
        return self.scorer.model

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

    def _forward(self, batch: Sequence[dict[str, Any]]):
        import torch

        net = self.scorer.model
        dev = next(net.parameters()).device
        tok = self.scorer.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            ids[i, :len(b["input_ids"])] = torch.tensor(b["input_ids"])
            attn[i, :len(b["input_ids"])] = 1
        logits = net(input_ids=ids.to(dev), attention_mask=attn.to(dev)).logits.float()
        probs = torch.softmax(logits, dim=-1)[..., self.config.positive_label]
        return probs

    def loss(self, batch: Sequence[dict[str, Any]]):
        """(total, step term, trajectory term) for a batch; the step term averages over each sample's
        T steps first (the paper's 1/T Σ_t), then over samples that have steps."""
        import torch

        probs = self._forward(batch)
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
        return total, step, traj

    def predict(self, records: Sequence[dict[str, Any]]) -> list[tuple[list[float], float]]:
        """Predicted (step scores, trajectory score) per record."""
        import torch

        examples = self.encode(records)
        self.scorer.model.eval()
        out = []
        with torch.inference_mode():
            for a in range(0, len(examples), self.config.batch_size):
                chunk = examples[a:a + self.config.batch_size]
                probs = self._forward(chunk)
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

    def train(self, train_records: Sequence[dict[str, Any]],
              eval_records: Sequence[dict[str, Any]] | None = None) -> list[dict[str, float]]:
        """Train; returns one history row per epoch (train loss terms, held-out metrics). Epoch 0 is
        the untrained model's held-out metrics."""
        import torch

        cfg = self.config
        examples = self.encode(train_records)
        if not examples:
            raise ValueError("no trainable records (all too long or empty)")
        net = self.scorer.model
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate)
        if eval_records is not None:
            self.history.append({"epoch": 0, **{f"eval_{k}": v for k, v in self.evaluate(eval_records).items()}})
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            order = list(range(len(examples)))
            rng.shuffle(order)
            tot = st = tr = 0.0
            nb = 0
            for a in range(0, len(order), cfg.batch_size):
                batch = [examples[i] for i in order[a:a + cfg.batch_size]]
                total, step, traj = self.loss(batch)
                opt.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                tot, st, tr, nb = tot + total.item(), st + step.item(), tr + traj.item(), nb + 1
            row = {"epoch": epoch, "loss": tot / nb, "step_loss": st / nb, "traj_loss": tr / nb}
            if eval_records is not None:
                row.update({f"eval_{k}": v for k, v in self.evaluate(eval_records).items()})
            self.history.append(row)
        net.eval()
        if cfg.output_dir:
            self.save(cfg.output_dir)
        return self.history

    def save(self, path: str) -> None:
        import json
        from pathlib import Path

        self.scorer.model.save_pretrained(path)
        self.scorer.tokenizer.save_pretrained(path)
        (Path(path) / "rewardkit_prm.json").write_text(json.dumps(
            {"step_tag": self.config.step_tag, "positive_label": self.config.positive_label,
             "interface": "step_tag"}))
