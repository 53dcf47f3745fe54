"""The two DreamPRM reward models, on any Hugging Face causal LM.

* :class:`ValueHeadPRM` (DreamPRM v1): a ``Linear(vocab_size, 1)`` head on the **vocabulary
  logits** of the last token (not the hidden state), then a sigmoid. One forward pass per step
  prefix; the input is one user turn ``question + "\\n\\n" + prefix`` under the chat template with
  the generation prompt, so the last token is the assistant header.
* :class:`GenerativePRM` (DreamPRM-1.5): a multi-turn dialogue (system, question, then for each
  step a user turn with the step and an assistant turn with "+" or "-"); the step score is the
  full-vocabulary softmax probability of "+" at the position that predicts the assistant reply.
  One forward pass scores every step. The "+"/"-" token ids come from the tokenizer, and every
  slot is checked to hold one of them after tokenisation.

Both modules have a tensor-only ``forward`` (so DeepSpeed can wrap them and ``torch.func`` can
call them with substitute parameters) and an ``encode`` that turns chains into those tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rewardkit_dreamprm.steps import Chain

DEFAULT_SYSTEM_PROMPT = ("You check solutions one step at a time. After each step, answer with a single "
                         "character: + when the step is correct, - when it is wrong.")
QUESTION_HEADER = "### Question:\n"
LOGODDS_EPS = 1e-6
DEFAULT_MAX_BATCH_TOKENS = 32768  # padded tokens per scoring forward (rows x longest row)


class EncodingError(ValueError):
    """A chain cannot be turned into model inputs (no steps, a label slot that does not tokenise)."""


def _pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    offsets = []
    for i, r in enumerate(rows):
        off = width - len(r)
        ids[i, off:] = torch.tensor(r, dtype=torch.long)
        mask[i, off:] = 1
        offsets.append(off)
    return ids, mask, offsets


def is_model_path(model: Any) -> bool:
    """Whether ``model`` names a checkpoint (a path or Hub id) rather than a loaded model."""
    return isinstance(model, (str, bytes)) or hasattr(model, "__fspath__")


def load_kwargs(dtype: Any = None, attn_implementation: str | None = None) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for a PRM's ``dtype`` (a torch dtype or its name) and
    attention implementation; empty when both are left to the checkpoint."""
    kw: dict[str, Any] = {}
    if dtype is not None:
        kw["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    return kw


def _load_lm(model: Any, tokenizer: Any, dtype: Any = None, attn_implementation: str | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if is_model_path(model):
        path = str(model)
        lm = AutoModelForCausalLM.from_pretrained(path, **load_kwargs(dtype, attn_implementation))
        tok = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
        if isinstance(tok, str):
            tok = AutoTokenizer.from_pretrained(tok)
        return lm, tok
    if tokenizer is None:
        raise ValueError("pass the tokenizer with an in-memory model")
    return model, tokenizer


class _PRMBase(nn.Module):
    variant: str = ""

    def __init__(self, lm: nn.Module, tokenizer: Any, *, max_length: int = 4096) -> None:
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.max_length = max_length
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError("the tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        self.truncated = 0
        self.forwards = 0
        self.forward_shapes: list[tuple[int, int]] = []  # (rows, width) of recent scoring forwards

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _chat(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return text + ("assistant: " if add_generation_prompt else "")

    # -- the interface the trainer and the reward use ---------------------------------------------
    def encode(self, chains: Sequence[Chain], steps: Sequence[Sequence[int]] | None = None,
               labels: Sequence[Sequence[float]] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def outputs(self, enc: dict[str, Any], forward=None) -> StepOutputs:
        """Run the model on an encoded batch; ``forward`` substitutes the call (DeepSpeed engine,
        ``torch.func.functional_call``)."""
        fwd = forward or self
        tensors = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                   for k, v in enc.items() if k in self.FORWARD_KEYS}
        raw = fwd(**tensors)
        return StepOutputs(self.variant, raw, enc["owner"], enc["step"])

    def score_units(self, chain: Chain) -> list[tuple[list[int], list[int], list[int]]]:
        """The rows one chain is scored with: ``(token ids, slot positions, step indices)`` each."""
        raise NotImplementedError

    def collate(self, rows: Sequence[tuple[list[int], list[int]]]) -> dict[str, Any]:
        """Forward tensors for rows of ``(token ids, slot positions)``."""
        raise NotImplementedError

    @torch.no_grad()
    def score_chains(self, chains: Sequence[Chain], batch_size: int = 16,
                     max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS) -> list[list[float]]:
        """p(step is good) for every step of every chain (no gradients); a chain without steps gets ``[]``.

        Rows (v1: one per step prefix; 1.5: one per chain) are encoded one chain at a time and
        packed in order into forwards of at most ``batch_size`` rows and ``max_batch_tokens``
        padded tokens (rows x longest row; a single longer row runs alone), so peak memory follows
        the budget, not steps x length. Each row is scored as it would be alone (left padding and
        the attention mask keep rows independent).
        """
        out: list[list[tuple[int, float]]] = [[] for _ in chains]
        pending: list[tuple[int, list[int], list[int], list[int]]] = []  # (chain, ids, slots, steps)
        width = 0

        def flush() -> None:
            nonlocal width
            if not pending:
                return
            enc = self.collate([(ids, slots) for _, ids, slots, _ in pending])
            self.forwards += 1
            self.forward_shapes = [*self.forward_shapes[-999:], tuple(enc["input_ids"].shape)]
            probs = self.outputs(enc).probs().float().cpu().tolist()
            k = 0
            for c, _, _, steps in pending:
                for step in steps:
                    out[c].append((step, probs[k]))
                    k += 1
            pending.clear()
            width = 0

        for c, chain in enumerate(chains):
            if len(chain) == 0:
                continue
            for ids, slots, steps in self.score_units(chain):
                w = max(width, len(ids))
                over = max_batch_tokens is not None and w * (len(pending) + 1) > max_batch_tokens
                if pending and (len(pending) >= batch_size or over):
                    flush()
                    w = len(ids)
                pending.append((c, ids, slots, steps))
                width = w
        flush()
        return [[p for _, p in sorted(o)] for o in out]


class ValueHeadPRM(_PRMBase):
    """DreamPRM v1: sigmoid(Linear(vocab logits of the last token)) for each step prefix."""

    variant = "v1"
    FORWARD_KEYS = ("input_ids", "attention_mask")

    def __init__(self, lm: nn.Module, tokenizer: Any, *, max_length: int = 4096, head: nn.Linear | None = None,
                 question_sep: str = "\n\n") -> None:
        super().__init__(lm, tokenizer, max_length=max_length)
        vocab = lm.get_output_embeddings().weight.shape[0]
        self.head = head if head is not None else nn.Linear(vocab, 1)
        self.head.to(dtype=torch.float32, device=next(lm.parameters()).device)
        self.question_sep = question_sep

    @classmethod
    def from_pretrained(cls, model: Any, tokenizer: Any = None, *, dtype: Any = None,
                        attn_implementation: str | None = None, **kw: Any) -> ValueHeadPRM:
        lm, tok = _load_lm(model, tokenizer, dtype, attn_implementation)
        prm = cls(lm, tok, **kw)
        head_file = None
        if is_model_path(model):
            import os

            head_file = os.path.join(str(model), "dreamprm_head.pt")
            if os.path.exists(head_file):
                prm.head.load_state_dict(torch.load(head_file, map_location="cpu", weights_only=True))
        return prm

    def save_pretrained(self, path: str) -> None:
        import os

        os.makedirs(path, exist_ok=True)
        self.lm.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        torch.save(self.head.state_dict(), os.path.join(path, "dreamprm_head.pt"))
        with open(os.path.join(path, "dreamprm.json"), "w") as fh:
            fh.write('{"variant": "v1"}\n')

    def prefix_text(self, chain: Chain, i: int) -> str:
        return self._chat([{"role": "user", "content": chain.question + self.question_sep + chain.prefix(i)}], True)

    def prefix_ids(self, chain: Chain, i: int) -> list[int]:
        ids = self.tokenizer(self.prefix_text(chain, i), add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_length:
            ids = ids[-self.max_length:]  # keep the end: the scored token is the last one
            self.truncated += 1
        return ids

    def score_units(self, chain):
        return [(self.prefix_ids(chain, i), [], [i]) for i in range(len(chain))]

    def collate(self, rows):
        ids, mask, _ = _pad_left([r for r, _ in rows], self.tokenizer.pad_token_id)
        n = len(rows)
        return {"input_ids": ids, "attention_mask": mask, "owner": list(range(n)), "step": [0] * n}

    def encode(self, chains, steps=None, labels=None):
        rows, owner, step_idx, targets = [], [], [], []
        for c, chain in enumerate(chains):
            which = range(len(chain)) if steps is None else steps[c]
            for i in which:
                rows.append(self.prefix_ids(chain, i))
                owner.append(c)
                step_idx.append(i)
                if labels is not None:
                    targets.append(float(labels[c][i]))
        if not rows:
            raise EncodingError("no step prefixes to score (every chain is empty)")
        ids, mask, _ = _pad_left(rows, self.tokenizer.pad_token_id)
        enc: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "owner": owner, "step": step_idx}
        if labels is not None:
            enc["labels"] = torch.tensor(targets, dtype=torch.float32)
        return enc

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
        last = out.logits[:, -1, :].float()  # left padded: the last position is every row's last token
        return self.head(last).squeeze(-1)  # (n,) logits of p(good)


class GenerativePRM(_PRMBase):
    """DreamPRM-1.5: p("+") at every assistant slot of a step-by-step judging dialogue."""

    variant = "1.5"
    FORWARD_KEYS = ("input_ids", "attention_mask", "slot_rows", "slot_pos")

    def __init__(self, lm: nn.Module, tokenizer: Any, *, max_length: int = 4096,
                 system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, plus: str = "+", minus: str = "-",
                 teacher_forcing: bool = True) -> None:
        super().__init__(lm, tokenizer, max_length=max_length)
        self.system_prompt = system_prompt
        self.plus, self.minus = plus, minus
        self.plus_id = self._single_token(plus)
        self.minus_id = self._single_token(minus)
        if self.plus_id == self.minus_id:
            raise ValueError(f"{plus!r} and {minus!r} map to the same token id {self.plus_id}")
        self.teacher_forcing = teacher_forcing

    def _single_token(self, s: str) -> int:
        ids = self.tokenizer.encode(s, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"the label {s!r} is {len(ids)} tokens ({ids}) under this tokenizer; "
                             "the generative PRM needs single-token labels")
        return int(ids[0])

    @classmethod
    def from_pretrained(cls, model: Any, tokenizer: Any = None, *, dtype: Any = None,
                        attn_implementation: str | None = None, **kw: Any) -> GenerativePRM:
        lm, tok = _load_lm(model, tokenizer, dtype, attn_implementation)
        return cls(lm, tok, **kw)

    def save_pretrained(self, path: str) -> None:
        import os

        os.makedirs(path, exist_ok=True)
        self.lm.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        with open(os.path.join(path, "dreamprm.json"), "w") as fh:
            fh.write('{"variant": "1.5"}\n')

    def dialogue(self, chain: Chain, labels: Sequence[float] | None = None) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": QUESTION_HEADER + chain.question})
        for i, step in enumerate(chain.steps):
            good = True
            if labels is not None and self.teacher_forcing and labels[i] is not None:
                good = float(labels[i]) >= 0.5
            msgs.append({"role": "user", "content": step})
            msgs.append({"role": "assistant", "content": self.plus if good else self.minus})
        return msgs

    def _encode_one(self, chain: Chain, labels: Sequence[float] | None) -> tuple[list[int], list[int]]:
        msgs = self.dialogue(chain, labels)
        full = self._chat(msgs, False)
        slot_chars = []
        for k, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            head = self._chat(msgs[:k], True)
            if not full.startswith(head) or not full[len(head):].startswith(m["content"]):
                raise EncodingError("the chat template does not render the judging dialogue as a prefix-"
                                    "extensible conversation; cannot locate the '+'/'-' slots")
            slot_chars.append(len(head))
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        starts = {s: t for t, (s, e) in enumerate(offsets) if e > s}
        positions = []
        for ch in slot_chars:
            t = starts.get(ch)
            if t is None or ids[t] not in (self.plus_id, self.minus_id) or t == 0:
                raise EncodingError(f"the step label at character {ch} does not tokenise as the single "
                                    f"token {self.plus_id} ('+') or {self.minus_id} ('-') under this template")
            positions.append(t - 1)  # the logits at t-1 predict the label token
        if len(ids) > self.max_length:
            cut = len(ids) - self.max_length
            if positions and positions[0] < cut:
                raise EncodingError(f"dialogue of {len(ids)} tokens exceeds max_length={self.max_length} and "
                                    "truncation would drop a step slot")
            ids = ids[cut:]
            positions = [p - cut for p in positions]
            self.truncated += 1
        return ids, positions

    def score_units(self, chain):
        ids, pos = self._encode_one(chain, None)
        return [(ids, pos, list(range(len(chain))))]

    def collate(self, rows):
        ids, mask, offs = _pad_left([r for r, _ in rows], self.tokenizer.pad_token_id)
        slots = [(r, p + offs[r]) for r, (_, pos) in enumerate(rows) for p in pos]
        return {"input_ids": ids, "attention_mask": mask,
                "slot_rows": torch.tensor([r for r, _ in slots], dtype=torch.long),
                "slot_pos": torch.tensor([p for _, p in slots], dtype=torch.long),
                "owner": [r for r, _ in slots], "step": [0] * len(slots)}

    def encode(self, chains, steps=None, labels=None):
        rows, slots, owner, step_idx, targets = [], [], [], [], []
        for c, chain in enumerate(chains):
            if len(chain) == 0:
                continue
            ids, pos = self._encode_one(chain, None if labels is None else labels[c])
            which = range(len(chain)) if steps is None else steps[c]
            r = len(rows)
            rows.append(ids)
            for i in which:
                slots.append((r, pos[i]))
                owner.append(c)
                step_idx.append(i)
                if labels is not None:
                    targets.append(float(labels[c][i]))
        if not slots:
            raise EncodingError("no step slots to score (every chain is empty)")
        ids, mask, offs = _pad_left(rows, self.tokenizer.pad_token_id)
        enc: dict[str, Any] = {
            "input_ids": ids, "attention_mask": mask,
            "slot_rows": torch.tensor([r for r, _ in slots], dtype=torch.long),
            "slot_pos": torch.tensor([p + offs[r] for r, p in slots], dtype=torch.long),
            "owner": owner, "step": step_idx}
        if labels is not None:
            enc["labels"] = torch.tensor(targets, dtype=torch.float32)
        return enc

    def forward(self, input_ids, attention_mask, slot_rows, slot_pos) -> torch.Tensor:
        keep, inverse = torch.unique(slot_pos, sorted=True, return_inverse=True)
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep)
        logits = out.logits[slot_rows, inverse].float()  # (n_slots, vocab)
        logp = torch.log_softmax(logits, dim=-1)
        return torch.stack([logp[:, self.plus_id], logp[:, self.minus_id]], dim=-1)  # (n, 2)


@dataclass
class StepOutputs:
    """Raw model outputs for a flat list of (chain ``owner``, ``step``) pairs."""

    variant: str
    raw: torch.Tensor  # v1: (n,) logits; 1.5: (n, 2) log p('+'), log p('-')
    owner: list[int]
    step: list[int]

    def probs(self) -> torch.Tensor:
        """p(step is good): sigmoid of the v1 logit, full-vocabulary p('+') for 1.5."""
        return torch.sigmoid(self.raw) if self.variant == "v1" else self.raw[:, 0].exp()

    def logodds(self, eps: float = LOGODDS_EPS) -> torch.Tensor:
        """log(p/(1-p)) with p clamped to [eps, 1-eps]: finite at p -> 0 or 1, gradient kept inside."""
        if self.variant == "v1":
            bound = math.log((1 - eps) / eps)
            return self.raw.clamp(-bound, bound)
        p = self.probs().clamp(eps, 1 - eps)
        return torch.log(p) - torch.log1p(-p)

    def features(self) -> torch.Tensor:
        """(n, 2) instance-net features: softmax over [good, bad] (1.5: over the '+'/'-' logits)."""
        if self.variant == "v1":
            p = self.probs()
            return torch.stack([p, 1 - p], dim=-1)
        return torch.softmax(self.raw, dim=-1)

    def per_owner(self, values: torch.Tensor, n_owners: int) -> torch.Tensor:
        """Mean of ``values`` over each owner's entries -> (n_owners,)."""
        idx = torch.tensor(self.owner, device=values.device)
        sums = torch.zeros(n_owners, *values.shape[1:], dtype=values.dtype, device=values.device)
        sums = sums.index_add(0, idx, values)
        counts = torch.bincount(idx, minlength=n_owners).clamp(min=1).to(values.dtype)
        return sums / counts.view(-1, *([1] * (values.dim() - 1)))
