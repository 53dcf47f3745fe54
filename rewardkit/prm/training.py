"""Train token-classification PRMs on step-labelled data (TRL 1.16 has no PRM trainer).

Inputs are laid out exactly like :class:`rewardkit.prm.TaggedScorer` lays them out at scoring
time (prompt, then each step followed by the PRM's step tag), so a PRM trained here scores with
the same tag positions. Only the tag positions carry a label (``-100`` elsewhere, ignored);
labels may be hard (0/1) or soft (Monte-Carlo estimates in [0, 1]).

Losses: ``"bce"`` (binary cross-entropy of the positive-class probability against the label;
with hard labels and two classes this is the usual cross-entropy) or ``"mse"`` (squared error
of that probability). ``label_mode="hard"`` rounds soft labels at 0.5 first.

The loop itself is :class:`PRMTrainer`; method plugins subclass it to change the encoding, the
loss, the evaluation or the optimiser, never to copy the loop.

>>> from rewardkit.prm.training import PRMTrainingConfig, train_prm
>>> model, history = train_prm("path/to/token-cls-prm", records, PRMTrainingConfig(epochs=3))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardkit.prm.scorers import TaggedScorer

IGNORE = -100.0


@dataclass
class PRMTrainingConfig:
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 16
    loss: str = "bce"            # "bce" | "mse" (the default label loss; a PRMTrainer subclass may replace it)
    label_mode: str = "soft"     # "soft" | "hard"
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    schedule: str = "linear"     # "linear" (warm-up, then linear decay to 0) | "constant"
    max_grad_norm: float = 1.0
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
        if self.schedule not in ("linear", "constant"):
            raise ValueError(f"schedule must be 'linear' or 'constant', got {self.schedule!r}")


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


def pad_rows(rows: Sequence[Sequence[float]], value: float, dtype: Any):
    """Right-pad lists to one width: a (len(rows), width) tensor."""
    import torch

    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=dtype)
    return out


class PRMTrainer:
    """The PRM training loop every method configures: encode the records, then per epoch shuffle
    (seeded), batch, forward, loss, AdamW step with gradient clipping and the learning-rate
    schedule; one history row per epoch; save at the end.

    The default is a token-classification PRM with a label at every step tag and
    ``config.loss`` (BCE or MSE of the positive-class probability). A method changes what it must
    by overriding, not by copying the loop:

    * :meth:`encode` — records to examples (each a dict with ``input_ids``);
    * :meth:`compute_loss` — ``(total, {term: value})`` for a batch of examples and the model's logits;
      the terms' epoch means land in the history next to ``loss``;
    * :meth:`evaluate` — held-out metrics (``eval_*`` columns; epoch 0 is the untrained model);
    * :meth:`epoch_stats` — extra history columns;
    * :meth:`make_optimizer` / :meth:`make_scheduler` — AdamW and ``config.schedule`` by default;
    * :meth:`metadata` — what ``rewardkit_prm.json`` records beside the saved model.

    The model is the ``scorer``'s (:class:`~rewardkit.prm.TaggedScorer`, built with
    ``prepare=False``): it is trained in this process alone, loaded whole and never handed to
    DeepSpeed, so it runs no collective and one rank of a launched run can train it while the
    others wait at a barrier.
    """

    def __init__(self, scorer: TaggedScorer, config: PRMTrainingConfig | None = None) -> None:
        self.scorer = scorer
        self.config = config or PRMTrainingConfig()
        self.stats: Counter[str] = Counter()
        self.history: list[dict[str, float]] = []

    @property
    def model(self):
        return self.scorer.model

    # -- the pieces a method may replace ------------------------------------------------------------
    def encode(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return encode_examples(self.scorer, records, label_mode=self.config.label_mode, stats=self.stats)

    def compute_loss(self, batch: Sequence[dict[str, Any]], logits: Any) -> tuple[Any, dict[str, Any]]:
        labels = pad_rows([b["labels"] for b in batch], IGNORE, self._torch.float32).to(logits.device)
        return prm_loss(logits, labels, self.config.loss, self.scorer.positive_label), {}

    def evaluate(self, records: Sequence[dict[str, Any]]) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} has no held-out evaluation")

    def epoch_stats(self) -> dict[str, float]:
        return {"examples": self.num_examples, "too_long": self.stats.get("too_long", 0),
                "truncated": self.stats.get("truncated", 0)}

    def make_optimizer(self, params: Any) -> Any:
        return self._torch.optim.AdamW(params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay)

    def make_scheduler(self, optimizer: Any, total_steps: int) -> Any:
        if self.config.schedule == "constant":
            return None
        warm = int(self.config.warmup_ratio * total_steps)
        return self._torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / max(warm, 1)) * max(0.0, (total_steps - s) / max(total_steps - warm, 1))
            if warm else max(0.0, (total_steps - s) / total_steps))

    def metadata(self) -> dict[str, Any]:
        return {"step_tag": self.scorer.step_tag, "positive_label": self.scorer.positive_label}

    # -- the loop -----------------------------------------------------------------------------------
    @property
    def _torch(self):
        import torch

        return torch

    def forward(self, batch: Sequence[dict[str, Any]]):
        """Logits (B, L, C) of a right-padded batch."""
        net = self.scorer.model
        tok = self.scorer.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        torch = self._torch
        ids = pad_rows([b["input_ids"] for b in batch], pad, torch.long)
        attn = pad_rows([[1] * len(b["input_ids"]) for b in batch], 0, torch.long)
        dev = next(net.parameters()).device
        return net(input_ids=ids.to(dev), attention_mask=attn.to(dev)).logits

    def train(self, train_records: Sequence[dict[str, Any]],
              eval_records: Sequence[dict[str, Any]] | None = None) -> list[dict[str, float]]:
        """Train; returns the history (one row per epoch, after an epoch-0 row of held-out metrics
        when ``eval_records`` is given)."""
        torch = self._torch
        cfg = self.config
        net = self.scorer.model
        examples = self.encode(train_records)
        if not examples:
            raise ValueError("no trainable examples (every record was empty or too long)")
        self.num_examples = len(examples)
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        opt = self.make_optimizer(net.parameters())
        total = math.ceil(len(examples) / cfg.batch_size) * cfg.epochs
        sched = self.make_scheduler(opt, total)
        if eval_records is not None:
            self.history.append({"epoch": 0, **{f"eval_{k}": v for k, v in self.evaluate(eval_records).items()}})
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            order = list(range(len(examples)))
            rng.shuffle(order)
            losses: list[float] = []
            terms: dict[str, list[float]] = {}
            for a in range(0, len(order), cfg.batch_size):
                batch = [examples[i] for i in order[a:a + cfg.batch_size]]
                loss, parts = self.compute_loss(batch, self.forward(batch))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                losses.append(loss.item())
                for k, v in parts.items():
                    terms.setdefault(k, []).append(v.item())
                if cfg.log_every and step % cfg.log_every == 0:
                    print(f"step {step}/{total} loss {sum(losses[-cfg.log_every:]) / cfg.log_every:.4f}")
            row = {"epoch": epoch, "loss": sum(losses) / len(losses),
                   **{k: sum(v) / len(v) for k, v in terms.items()}, **self.epoch_stats()}
            if eval_records is not None:
                row.update({f"eval_{k}": v for k, v in self.evaluate(eval_records).items()})
            self.history.append(row)
        net.eval()
        if cfg.output_dir:
            self.save(cfg.output_dir)
        return self.history

    def save(self, path: str) -> None:
        """The model, its tokenizer and ``rewardkit_prm.json`` (:meth:`metadata`) in ``path``."""
        self.scorer.model.save_pretrained(path)
        self.scorer.tokenizer.save_pretrained(path)
        (Path(path) / "rewardkit_prm.json").write_text(json.dumps(self.metadata()))


def train_prm(model: Any, records: Sequence[dict[str, Any]], config: PRMTrainingConfig | None = None, *,
              tokenizer: Any = None) -> tuple[Any, list[dict[str, float]]]:
    """Fine-tune a token-classification PRM on stepwise ``records``; returns (model, history).

    ``model`` is a path/id or a loaded ``*ForTokenClassification`` model. ``history`` has one entry
    per epoch with the mean training loss (see :class:`PRMTrainer`).
    """
    cfg = config or PRMTrainingConfig()
    scorer = TaggedScorer(model, tokenizer, head="token_cls", max_length=cfg.max_length, prepare=False,
                          **cfg.scorer_kwargs)
    trainer = PRMTrainer(scorer, cfg)
    history = trainer.train(records)
    return trainer.model, history


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
