"""Train token-classification PRMs on step-labelled data (TRL 1.16 has no PRM trainer).

Inputs are laid out exactly like :class:`rewardkit.prm.TaggedScorer` lays them out at scoring
time (prompt, then each step followed by the PRM's step tag), so a PRM trained here scores with
the same tag positions. Only the tag positions carry a label (``-100`` elsewhere, ignored);
labels may be hard (0/1) or soft (Monte-Carlo estimates in [0, 1]).

Losses: ``"bce"`` (binary cross-entropy of the positive-class probability against the label;
with hard labels and two classes this is the usual cross-entropy) or ``"mse"`` (squared error
of that probability). ``label_mode="hard"`` rounds soft labels at 0.5 first.

>>> from rewardkit.prm.training import PRMTrainingConfig, train_prm
>>> model, history = train_prm("path/to/token-cls-prm", records, PRMTrainingConfig(epochs=3))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardkit.prm.scorers import TaggedScorer

IGNORE = -100.0


@dataclass
class PRMTrainingConfig:
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 16
    loss: str = "bce"            # "bce" | "mse"
    label_mode: str = "soft"     # "soft" | "hard"
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_length: int = 1024
    seed: int = 0
    output_dir: str | None = None   # save the trained model + tokenizer here when set
    log_every: int = 0              # print the running loss every N optimiser steps (0: never)
    scorer_kwargs: dict[str, Any] = field(default_factory=dict)  # step_tag, prompt_template, ...

    def __post_init__(self) -> None:
        if self.loss not in ("bce", "mse"):
            raise ValueError(f"loss must be 'bce' or 'mse', got {self.loss!r}")
        if self.label_mode not in ("soft", "hard"):
            raise ValueError(f"label_mode must be 'soft' or 'hard', got {self.label_mode!r}")


def encode_examples(scorer: TaggedScorer, records: Sequence[dict[str, Any]], *, label_mode: str = "soft",
                    stats: Counter[str] | None = None) -> list[dict[str, list]]:
    """Stepwise records -> ``{"input_ids", "labels"}`` with a label at every tag position."""
    out = []
    for rec in records:
        steps, labels = rec["completions"], rec["labels"]
        if len(steps) != len(labels):
            raise ValueError(f"{len(steps)} steps but {len(labels)} labels")
        if not steps:
            continue
        fitted = scorer._fit(*scorer.encode(rec["prompt"], steps), stats)
        if fitted is None:
            continue
        ids, positions = fitted
        lab = [IGNORE] * len(ids)
        for p, y in zip(positions, labels):
            y = float(y)
            lab[p] = float(y >= 0.5) if label_mode == "hard" else y
        out.append({"input_ids": ids, "labels": lab})
    return out


def prm_loss(logits, labels, loss: str = "bce", positive_label: int = 1):
    """Loss on labelled (non ``-100``) positions of token-classification ``logits`` (B, L, C)."""
    import torch
    import torch.nn.functional as F

    mask = labels != IGNORE
    if not bool(mask.any()):
        return logits.sum() * 0.0
    sel = logits[mask].float()
    y = labels[mask].float()
    if sel.shape[-1] == 1:
        z = sel[:, 0]
        if loss == "bce":
            return F.binary_cross_entropy_with_logits(z, y)
        return ((torch.sigmoid(z) - y) ** 2).mean()
    logp = torch.log_softmax(sel, dim=-1)
    log_pos = logp[:, positive_label]
    if loss == "bce":
        log_neg = torch.log1p(-log_pos.exp().clamp(max=1 - 1e-7))
        return -(y * log_pos + (1 - y) * log_neg).mean()
    return ((log_pos.exp() - y) ** 2).mean()


def _collate(batch: Sequence[dict[str, list]], pad_id: int):
    import torch

    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.float32)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[i, :n] = torch.tensor(b["input_ids"])
        attn[i, :n] = 1
        labels[i, :n] = torch.tensor(b["labels"], dtype=torch.float32)
    return ids, attn, labels


def train_prm(model: Any, records: Sequence[dict[str, Any]], config: PRMTrainingConfig | None = None, *,
              tokenizer: Any = None) -> tuple[Any, list[dict[str, float]]]:
    """Fine-tune a token-classification PRM on stepwise ``records``; returns (model, history).

    ``model`` is a path/id or a loaded ``*ForTokenClassification`` model. ``history`` has one entry
    per epoch with the mean training loss. Training runs in this process alone, with no
    collective (the model is loaded whole even in a ZeRO-3 run), so in a launched run one rank
    may train while the others wait at a barrier.
    """
    import torch

    cfg = config or PRMTrainingConfig()
    # a plain single-process loop: the model is loaded whole and never handed to DeepSpeed, so it
    # runs no collective and one rank of a launched run can train it while the others wait
    scorer = TaggedScorer(model, tokenizer, head="token_cls", max_length=cfg.max_length, prepare=False,
                          **cfg.scorer_kwargs)
    scorer._load()
    net = scorer._lazy_model
    positive = scorer.positive_label
    stats: Counter[str] = Counter()
    examples = encode_examples(scorer, records, label_mode=cfg.label_mode, stats=stats)
    if not examples:
        raise ValueError("no trainable examples (every record was empty or too long)")
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = int(cfg.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(warm, 1)) * max(0.0, (total - s) / max(total - warm, 1)) if warm
        else max(0.0, (total - s) / total))
    device = scorer._lazy_device
    history: list[dict[str, float]] = []
    net.train()
    step = 0
    for epoch in range(cfg.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        losses = []
        for a in range(0, len(order), cfg.batch_size):
            ids, attn, labels = _collate([examples[i] for i in order[a:a + cfg.batch_size]], scorer._lazy_pad_id)
            logits = net(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
            loss = prm_loss(logits, labels.to(device), cfg.loss, positive)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            if cfg.log_every and step % cfg.log_every == 0:
                print(f"step {step}/{total} loss {sum(losses[-cfg.log_every:]) / cfg.log_every:.4f}")
        history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses), "examples": len(examples),
                        "too_long": stats.get("too_long", 0), "truncated": stats.get("truncated", 0)})
    net.eval()
    if cfg.output_dir:
        import json
        from pathlib import Path

        net.save_pretrained(cfg.output_dir)
        scorer._lazy_tokenizer.save_pretrained(cfg.output_dir)
        (Path(cfg.output_dir) / "rewardkit_prm.json").write_text(
            json.dumps({"step_tag": scorer.step_tag, "positive_label": positive}))
    return net, history


def step_accuracy(scorer: Any, records: Sequence[dict[str, Any]], threshold: float = 0.5) -> float:
    """Fraction of labelled steps whose score falls on the label's side of ``threshold``."""
    scores = scorer.score([r["prompt"] for r in records], [r["completions"] for r in records])
    right = n = 0
    for rec, sc in zip(records, scores):
        if sc is None:
            continue
        for s, y in zip(sc, rec["labels"]):
            right += int((s >= threshold) == (float(y) >= 0.5))
            n += 1
    return right / n if n else float("nan")
