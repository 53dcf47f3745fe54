"""Step scorers: per-step scores for a batch of ``(prompt, steps)``.

One interface, :class:`StepScorer`, with three backends:

``TaggedScorer``  one forward pass per trajectory. The PRM's step tag is placed after every step
                  (whatever delimiter the policy used: steps arrive already split, so the policy's
                  delimiter never reaches the PRM) and the score is read at every tag position.
``PrefixScorer``  one forward pass per prefix ``steps[:k]`` (generative / prompt-templated PRMs).
``RemoteScorer``  the same interface over HTTP (``POST {"prompts", "steps"} -> {"scores"}``).

Score heads (``head=``):

``"token_cls"``  ``AutoModelForTokenClassification``: softmax over labels, probability of
                 ``positive_label`` (sigmoid when the model has one label). TRL-PRM / Qwen2.5-Math-PRM.
``"lm"``         ``AutoModelForCausalLM``: ``p(good) / (p(good) + p(bad))`` of the next token at the
                 tag, token ids derived from the tokenizer (``good_token="+"``, ``bad_token="-"``).
                 Math-Shepherd / VisualPRM.
``"value"``      ``AutoModelForSequenceClassification`` used as a value head on every position,
                 sigmoid of its logit (probability of ``positive_label`` with two labels).

Truncation is explicit and counted: sequences longer than ``max_length`` lose prompt tokens from
the left first (``truncated`` +1); when the steps alone do not fit, the row is not scored (``None``,
``too_long`` +1), or ``truncation="error"`` raises. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HEADS = ("token_cls", "lm", "value")
TRUNCATION = ("prompt", "error")
PRM_META_FILE = "rewardkit_prm.json"  # optional: {"step_tag": ..., "positive_label": ...} beside a PRM

RowScores = list[float] | None


class StepScorer:
    """Per-step scores for a batch of trajectories.

    ``score(prompts, steps)`` takes the prompt text of each row and the step texts of each row
    (``steps[i][k]`` is step k of row i, as split from the completion) and returns, for each row,
    one float per step (``len(out[i]) == len(steps[i])``), or ``None`` when the row could not be
    scored (too long under the truncation policy, server said so). Implementations must be
    picklable: heavy state lives in attributes whose names start with ``_lazy_``.

    ``stats``, when given, is a ``Counter`` the scorer adds its counts to (``truncated``,
    ``too_long``, ``forwards``, ``tokens``); the caller logs them.
    """

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              stats: Counter[str] | None = None) -> list[RowScores]:
        raise NotImplementedError

    def keep_in_step(self, stats: Counter[str] | None = None) -> None:
        """Called instead of :meth:`score` on a rank with no rows to score in this call. A scorer
        whose model is sharded over the ranks joins its collectives here; others do nothing."""

    def __call__(self, prompts, steps, **kwargs) -> list[RowScores]:
        return self.score(prompts, steps, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _check_inputs(prompts: Sequence[str], steps: Sequence[Sequence[str]]) -> None:
    if len(prompts) != len(steps):
        raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
    for i, row in enumerate(steps):
        if isinstance(row, str):
            raise TypeError(f"steps[{i}] is a string; pass a list of step strings per row")


def _read_meta(path: str) -> dict[str, Any]:
    meta = Path(path) / PRM_META_FILE
    if meta.exists():
        return json.loads(meta.read_text(encoding="utf-8"))
    return {}


def _head_from_architecture(arch: str) -> str:
    if arch.endswith("ForTokenClassification"):
        return "token_cls"
    if arch.endswith("ForSequenceClassification"):
        return "value"
    if arch.endswith(("ForCausalLM", "ForConditionalGeneration", "LMHeadModel")):
        return "lm"
    raise ValueError(f"cannot tell the score head of a {arch}; pass head='token_cls'|'lm'|'value'")


def _auto_class(head: str):
    import transformers

    return {"token_cls": transformers.AutoModelForTokenClassification,
            "lm": transformers.AutoModelForCausalLM,
            "value": transformers.AutoModelForSequenceClassification}[head]


class HFStepScorer(StepScorer):
    """Shared machinery of the transformers backends: loading, heads, batching, truncation.

    Args:
        model: a path or Hub id (loaded lazily with the ``AutoModel*`` class of the head), or a
            loaded ``PreTrainedModel``.
        tokenizer: a tokenizer, a path/id, or None (the model's own).
        head: ``"token_cls"``, ``"lm"``, ``"value"`` or None (from the model's architecture).
        step_tag: the PRM's step tag text (default: ``rewardkit_prm.json`` beside the model, else
            ``"\\n\\n"`` for ``lm``/``value`` heads and ``"<|step|>"`` otherwise). The score is read at
            the tag's last token.
        step_separator: text after each tag (e.g. ``"\\n"``); not scored.
        prompt_template: ``str.format`` template with ``{prompt}``, or a callable ``prompt -> text``.
        positive_label: the "good step" label of token-cls / two-label value heads.
        good_token, bad_token: the LM-head tokens whose probabilities are compared (single tokens).
        max_length: longest sequence sent to the model; see the module docstring for the policy.
        batch_size, max_batch_tokens: a forward batch holds at most this many rows / padded tokens
            (generation counts ``max_new_tokens`` per row). ``max_batch_tokens`` bounds the memory
            of every forward, however many steps a row has; prefix scoring builds its prefixes batch
            by batch within it. A sequence longer than the budget is forwarded alone. None: no budget.
        device, dtype: where and how the model runs (default: this process's device, see ``rewardkit.trl.process_device``;
            float32 on CPU, the checkpoint's dtype on GPU).
        add_bos: prepend the tokenizer's BOS token when it has one.
        model_kwargs: extra ``from_pretrained`` kwargs (``trust_remote_code``, ``revision``, ...).
        prepare: inside a DeepSpeed run, hand the model to
            :func:`rewardkit.trl.prepare_reward_model` on first use, as TRL does with its own reward
            models (ZeRO-3 shards it over the ranks). Under ZeRO-3 every rank then runs the same
            number of forward passes per call (idle one-token passes on the ranks with fewer rows,
            counted as ``idle_forwards``), since a sharded forward is a collective. Every rank must
            then score together. ``prepare=False`` loads the model whole (inside
            :func:`rewardkit.trl.whole_model_loading`) and never touches DeepSpeed, so loading and
            scoring run no collective: use it for a scorer that one process uses alone (PRM
            training, an evaluation on the main process).
    """

    def __init__(self, model: Any, tokenizer: Any = None, *, head: str | None = None,
                 step_tag: str | None = None, step_separator: str = "\n",
                 prompt_template: str | Callable[[str], str] = "{prompt}\n",
                 positive_label: int | None = None, good_token: str = "+", bad_token: str = "-",
                 max_length: int = 4096, truncation: str = "prompt", batch_size: int = 8,
                 max_batch_tokens: int | None = 32768, device: str | None = None, dtype: Any = None,
                 add_bos: bool = True, model_kwargs: dict[str, Any] | None = None, prepare: bool = True) -> None:
        if head is not None and head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if truncation not in TRUNCATION:
            raise ValueError(f"truncation must be one of {TRUNCATION}, got {truncation!r}")
        if max_length < 2:
            raise ValueError("max_length must be at least 2")
        if isinstance(model, (str, os.PathLike)):
            self.model_ref: str | None = str(model)
            self._lazy_model = None
        else:
            self.model_ref = getattr(getattr(model, "config", None), "_name_or_path", "") or None
            self._lazy_model = model
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            self.tokenizer_ref = None if tokenizer is None else str(tokenizer)
            self._lazy_tokenizer = None
        else:
            self.tokenizer_ref = getattr(tokenizer, "name_or_path", None) or None
            self._lazy_tokenizer = tokenizer
        meta = _read_meta(self.model_ref) if self.model_ref and os.path.isdir(self.model_ref) else {}
        self.head = head
        self.step_tag = step_tag if step_tag is not None else meta.get("step_tag")
        self.step_separator = step_separator
        self.prompt_template = prompt_template
        self.positive_label = positive_label if positive_label is not None else meta.get("positive_label", 1)
        self.good_token = good_token
        self.bad_token = bad_token
        self.max_length = int(max_length)
        self.truncation = truncation
        self.batch_size = int(batch_size)
        self.max_batch_tokens = max_batch_tokens
        self.device = device
        self.dtype = dtype
        self.add_bos = add_bos
        self.model_kwargs = dict(model_kwargs or {})
        self.prepare = prepare
        self.idle_forwards = 0
        self._lazy_ready = False

    # -- loading --------------------------------------------------------------------------------
    def _resolve_head(self, model: Any = None) -> str:
        if self.head is not None:
            return self.head
        if model is not None:
            return _head_from_architecture(type(model).__name__)
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(self.model_ref, **{k: v for k, v in self.model_kwargs.items()
                                                             if k in ("trust_remote_code", "revision")})
        archs = getattr(cfg, "architectures", None) or []
        if not archs:
            raise ValueError(f"{self.model_ref}: config names no architecture; pass head=")
        return _head_from_architecture(archs[0])

    def _load(self) -> None:
        if self._lazy_ready:
            return
        from contextlib import nullcontext

        import torch
        from transformers import AutoTokenizer

        from rewardkit.trl.placement import (
            is_sharded,
            prepare_reward_model,
            process_device,
            whole_model_loading,
            zero_stage,
        )

        model = self._lazy_model
        if model is None:
            if not self.model_ref:
                raise RuntimeError("this scorer was built from an in-memory model that was never saved and has "
                                   "been pickled; pass a path so a copy can load it")
            self.head = self._resolve_head()
            kwargs = dict(self.model_kwargs)
            if self.dtype is not None:
                kwargs.setdefault("dtype", self.dtype)
            # a model that is not handed to DeepSpeed must not be built partitioned under ZeRO-3:
            # that build is a collective, and one process alone (PRM training, an evaluation on
            # the main process) would wait for its peers for ever
            with nullcontext() if self.prepare else whole_model_loading():
                model = self._model_class().from_pretrained(self.model_ref, **kwargs)
        else:
            self.head = self._resolve_head(model)

        device = self.device or (str(model.device) if self._lazy_model is not None and hasattr(model, "device")
                                 else process_device())
        if self.prepare and zero_stage() is not None and type(model).__name__ != "DeepSpeedEngine":
            # TRL's recipe for reward models; it also places the model on this process's device
            model = prepare_reward_model(model)
            device = str(getattr(model, "device", device))
        elif self._lazy_model is None:
            model.to(device)
        model.eval()
        tok = self._lazy_tokenizer
        if tok is None:
            ref = self.tokenizer_ref or self.model_ref
            if not ref:
                raise RuntimeError("no tokenizer: pass tokenizer= (an object or a path)")
            tok = AutoTokenizer.from_pretrained(ref, **{k: v for k, v in self.model_kwargs.items()
                                                        if k in ("trust_remote_code", "revision")})
        self._lazy_model = model
        self._lazy_tokenizer = tok
        self._lazy_device = torch.device(device)
        if self.step_tag is None:
            self.step_tag = "<|step|>" if self.head == "token_cls" else "\n\n"
        self._lazy_tag_ids = self._ids(self.step_tag)
        if not self._lazy_tag_ids:
            raise ValueError(f"step tag {self.step_tag!r} encodes to no tokens")
        self._lazy_sep_ids = self._ids(self.step_separator) if self.step_separator else []
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._lazy_pad_id = 0 if pad is None else int(pad)
        if self.head == "lm":
            self._lazy_good_bad = (self._single_token(self.good_token), self._single_token(self.bad_token))
        # forwards of a partitioned model are collectives: every rank runs as many per call
        self._lazy_sharded = is_sharded(model)
        self._lazy_ready = True

    def _model_class(self):
        """The ``AutoModel*`` class that loads this scorer's model (by its head)."""
        return _auto_class(self.head)

    def _ids(self, text: str) -> list[int]:
        return list(self._lazy_tokenizer(text, add_special_tokens=False)["input_ids"])

    def _single_token(self, text: str) -> int:
        ids = self._ids(text)
        if len(ids) != 1:
            raise ValueError(f"LM-head PRM token {text!r} encodes to {len(ids)} tokens {ids} with this tokenizer; "
                             "pass good_token/bad_token that are single tokens")
        return ids[0]

    @property
    def model(self):
        self._load()
        return self._lazy_model

    @property
    def tokenizer(self):
        self._load()
        return self._lazy_tokenizer

    # -- encoding -------------------------------------------------------------------------------
    def _prompt_text(self, prompt: str) -> str:
        if callable(self.prompt_template):
            return self.prompt_template(prompt)
        return self.prompt_template.format(prompt=prompt)

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int], int]:
        """Token ids of the tagged trajectory, the position of each step's tag, and the prompt length.

        Pieces are tokenized separately (prompt, then each step, its tag, its separator) so the
        tag positions are known by construction and every prefix ``steps[:k]`` is an exact token
        prefix of the whole. A step's own text never contains the tag (it is removed) so the
        PRM sees exactly one tag per step.
        """
        return self.encode_many([prompt], [steps])[0]

    def encode_many(self, prompts: Sequence[str], steps: Sequence[Sequence[str]]) -> list[tuple[list[int], list[int], int]]:
        """:meth:`encode` for many rows, with one batched tokenizer call for all pieces."""
        self._load()
        tok = self._lazy_tokenizer
        tag = self.step_tag if (self.step_tag and self.step_tag.strip()) else None
        flat = [self._prompt_text(p) for p in prompts]
        for row in steps:
            flat += [s.replace(tag, " ") if tag and tag in s else s for s in row]
        pieces = tok(flat, add_special_tokens=False)["input_ids"] if flat else []
        bos = [int(tok.bos_token_id)] if self.add_bos and getattr(tok, "bos_token_id", None) is not None else []
        out = []
        k = len(prompts)
        for i, row in enumerate(steps):
            ids = bos + list(pieces[i])
            prompt_len = len(ids)
            positions = []
            for _ in row:
                ids += pieces[k]
                k += 1
                ids += self._lazy_tag_ids
                positions.append(len(ids) - 1)
                ids += self._lazy_sep_ids
            out.append((ids, positions, prompt_len))
        return out

    def _fit(self, ids: list[int], positions: list[int], prompt_len: int,
             stats: Counter[str] | None) -> tuple[list[int], list[int]] | None:
        """Apply the truncation policy: cut the prompt from the left; None when the steps don't fit."""
        # the trailing separator after the last tag is never needed
        need = positions[-1] + 1 if positions else len(ids)
        ids = ids[:need]
        excess = len(ids) - self.max_length
        if excess <= 0:
            return ids, positions
        if self.truncation == "error":
            raise ValueError(f"PRM input of {len(ids)} tokens exceeds max_length={self.max_length} "
                             "(truncation='error')")
        keep_bos = 1 if (self.add_bos and getattr(self._lazy_tokenizer, "bos_token_id", None) is not None) else 0
        if excess > prompt_len - keep_bos:
            if stats is not None:
                stats["too_long"] += 1
            return None
        if stats is not None:
            stats["truncated"] += 1
        ids = ids[:keep_bos] + ids[keep_bos + excess:]
        return ids, [p - excess for p in positions]

    # -- running the model -------------------------------------------------------------------------
    def _batches(self, lengths: Sequence[int], extra: int = 0) -> list[list[int]]:
        """Item indices grouped into forward batches, longest first, so padding stays small.

        A batch holds at most ``batch_size`` items and, with ``max_batch_tokens`` set, at most that
        many padded tokens (rows x width, the width counting ``extra`` generated tokens); an item
        longer than the budget on its own is forwarded alone.
        """
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        cur: list[int] = []
        for i in order:
            width = (lengths[cur[0]] if cur else lengths[i]) + extra
            too_many_tokens = self.max_batch_tokens is not None and (len(cur) + 1) * width > self.max_batch_tokens
            if cur and (len(cur) >= self.batch_size or too_many_tokens):
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
        return batches

    @staticmethod
    def _count_forward(stats: Counter[str] | None, key: str, rows: int, width: int, real_tokens: int) -> None:
        if stats is None:
            return
        stats[key] += 1
        stats["tokens"] += real_tokens
        stats["padded_tokens"] += rows * width
        stats["max_forward_tokens"] = max(stats["max_forward_tokens"], rows * width)

    def _forward_extras(self, items: Sequence[tuple[list[int], list[int]]], device: Any) -> dict[str, Any]:
        """Extra forward inputs of one batch besides its token ids (a vision scorer's pixels)."""
        return {}

    def _idle_forward(self) -> None:
        """One throw-away forward that keeps this ZeRO-3 rank in step with its peers. It takes the
        same path as a real batch (:meth:`_head_scores`): the LM and value heads call the base
        model, and a whole-model call would run DeepSpeed's start-of-forward step check (a
        broadcast) that the peers' base-model forwards never join."""
        import torch

        dev = self._lazy_device
        ids = torch.full((1, 1), self._lazy_pad_id, dtype=torch.long, device=dev)
        at = torch.zeros(1, dtype=torch.long, device=dev)
        with torch.inference_mode():
            self._head_scores(ids, torch.ones_like(ids), at, at)

    def _head_scores(self, input_ids, attention_mask, rows, cols, extra: dict[str, Any] | None = None):
        """Scores at ``(rows, cols)`` positions of one padded batch (``extra``: more forward inputs)."""
        import torch

        model = self._lazy_model
        extra = extra or {}
        if self.head == "token_cls":
            logits = model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits[rows, cols].float()
            if logits.shape[-1] == 1:
                return torch.sigmoid(logits[:, 0])
            return torch.softmax(logits, dim=-1)[:, self.positive_label]
        if self.head == "lm":
            good, bad = self._lazy_good_bad
            base = getattr(model, "base_model", None)
            out_emb = model.get_output_embeddings()
            # the base model + two rows of the output embedding saves the full-vocabulary logits, but
            # under ZeRO-3 that weight is a partition (size 0) outside its module's own forward
            if base is not None and base is not model and out_emb is not None and not self._lazy_sharded:
                hidden = base(input_ids=input_ids, attention_mask=attention_mask,
                              **extra).last_hidden_state[rows, cols]
                w = out_emb.weight[[good, bad]]
                logits = hidden.to(w.dtype) @ w.T
                if getattr(out_emb, "bias", None) is not None:
                    logits = logits + out_emb.bias[[good, bad]]
            else:
                logits = model(input_ids=input_ids, attention_mask=attention_mask,
                               **extra).logits[rows, cols][:, [good, bad]]
            return torch.softmax(logits.float(), dim=-1)[:, 0]
        # value head: the sequence-classification head applied at every position
        base = model.base_model
        head = None
        for attr in ("score", "classifier", "v_head", "value_head"):
            head = getattr(model, attr, None)
            if head is not None:
                break
        if head is None:
            raise ValueError(f"{type(model).__name__} has no score/classifier head to read per position")
        hidden = base(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state[rows, cols]
        logits = head(hidden).float()
        if logits.shape[-1] == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=-1)[:, self.positive_label]

    def run(self, seqs: Sequence[list[int]], positions: Sequence[list[int]],
            stats: Counter[str] | None = None) -> list[list[float]]:
        """Forward ``seqs`` in length-sorted, right-padded batches; scores at ``positions`` per sequence."""
        return self.run_items([len(s) for s in seqs], lambda i: (seqs[i], positions[i]), stats)

    def run_items(self, lengths: Sequence[int], fetch: Callable[[int], tuple[list[int], list[int]]],
                  stats: Counter[str] | None = None) -> list[list[float]]:
        """:meth:`run` over items that are built only when their batch runs.

        ``lengths[i]`` is the token count of item i and ``fetch(i)`` returns its ``(ids, positions)``;
        so the token ids held at any time are those of one forward batch (within the budget), not
        those of every item (for prefix scoring, every prefix of every row: a quadratic count).
        """
        import torch

        from rewardkit.trl.placement import lockstep_forwards

        self._load()
        out: list[list[float]] = [[] for _ in lengths]
        batches = self._batches(lengths) if len(lengths) else []
        # a collective for a ZeRO-3-sharded model; a whole model runs its own batches only
        n_forwards = lockstep_forwards(len(batches)) if self._lazy_sharded else len(batches)
        dev = self._lazy_device
        with torch.inference_mode():
            for idx in batches:
                items = [fetch(i) for i in idx]
                width = max(len(ids) for ids, _ in items)
                input_ids = torch.full((len(idx), width), self._lazy_pad_id, dtype=torch.long)
                attn = torch.zeros((len(idx), width), dtype=torch.long)
                rows, cols = [], []
                for r, (ids, pos) in enumerate(items):
                    input_ids[r, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                    attn[r, :len(ids)] = 1
                    rows += [r] * len(pos)
                    cols += list(pos)
                scores = self._head_scores(input_ids.to(dev), attn.to(dev), torch.tensor(rows, device=dev),
                                           torch.tensor(cols, device=dev), self._forward_extras(items, dev)).tolist()
                k = 0
                for i, (_, pos) in zip(idx, items):
                    out[i] = scores[k:k + len(pos)]
                    k += len(pos)
                self._count_forward(stats, "forwards", len(idx), width, int(attn.sum()))
                del items, input_ids, attn
        for _ in range(n_forwards - len(batches)):
            self._idle_forward()
            self.idle_forwards += 1
            if stats is not None:
                stats["idle_forwards"] += 1
        return out

    def keep_in_step(self, stats: Counter[str] | None = None) -> None:
        self.run([], [], stats)


class TaggedScorer(HFStepScorer):
    """One forward pass per trajectory; the score of step k is read at its tag (see module doc)."""

    def score(self, prompts, steps, *, stats=None):
        _check_inputs(prompts, steps)
        self._load()
        seqs, positions, where = [], [], []
        out: list[RowScores] = [None] * len(prompts)
        encoded = self.encode_many(prompts, steps)
        for i, row in enumerate(steps):
            if not row:
                out[i] = []
                continue
            fitted = self._fit(*encoded[i], stats)
            if fitted is None:
                continue
            seqs.append(fitted[0])
            positions.append(fitted[1])
            where.append(i)
        for i, sc in zip(where, self.run(seqs, positions, stats)):
            out[i] = sc
        return out


class PrefixScorer(HFStepScorer):
    """One forward pass per prefix ``steps[:k]``; the score is read at the prefix's last token.

    With ``template=None`` a prefix is laid out exactly like :class:`TaggedScorer` lays out the
    whole trajectory, cut after step k's tag, so on a causal PRM both backends give the same
    scores. With ``template(prompt, steps_prefix) -> str`` (a prompt-templated or generative
    judge, e.g. ending in "Is the last step correct? Answer:" with ``head="lm"``,
    ``good_token=" yes"``, ``bad_token=" no"``) the whole text is tokenized and the score is read
    at its last token.

    Generative judges: with ``max_new_tokens > 0`` (``head="lm"``) each prefix is continued by
    greedy generation (batched, left-padded) and ``parse(generated_text) -> float | None`` gives the
    step's score; the default parser reads the last of ``good_token`` / ``bad_token`` in the text
    as 1.0 / 0.0. A verdict that cannot be parsed makes the row ``None`` (counted ``unparsed``).
    """

    def __init__(self, model: Any, tokenizer: Any = None, *,
                 template: Callable[[str, Sequence[str]], str] | None = None, max_new_tokens: int = 0,
                 parse: Callable[[str], float | None] | None = None, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.template = template
        self.max_new_tokens = int(max_new_tokens)
        self.parse = parse
        if self.max_new_tokens and self.head not in (None, "lm"):
            raise ValueError("generation (max_new_tokens > 0) needs an LM-head model (head='lm')")

    def _parse(self, text: str) -> float | None:
        if self.parse is not None:
            value = self.parse(text)
            return None if value is None else float(value)
        good, bad = text.rfind(self.good_token.strip()), text.rfind(self.bad_token.strip())
        if good < 0 and bad < 0:
            return None
        return 1.0 if good > bad else 0.0

    def generate(self, seqs: Sequence[list[int]], stats: Counter[str] | None = None) -> list[str]:
        """Greedy continuations of ``seqs`` (length-sorted, left-padded batches), decoded."""
        return self.generate_items([len(s) for s in seqs], lambda i: seqs[i], stats)

    def generate_items(self, lengths: Sequence[int], fetch: Callable[[int], list[int]],
                       stats: Counter[str] | None = None) -> list[str]:
        """:meth:`generate` over items built only when their batch runs (``fetch(i)`` -> token ids).

        The token budget counts the ``max_new_tokens`` every row may grow by. Under ZeRO-3 every
        rank makes the same number of ``generate`` calls (idle one-token prompts on the ranks with
        fewer batches) with ``synced_gpus``, so ranks that finish early keep joining the sharded
        forwards of the others.
        """
        import torch

        from rewardkit.trl.placement import lockstep_forwards

        self._load()
        model, tok, dev = self._lazy_model, self._lazy_tokenizer, self._lazy_device
        out = [""] * len(lengths)
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None) or tok.eos_token_id
        batches = self._batches(lengths, extra=self.max_new_tokens) if len(lengths) else []
        n_calls = lockstep_forwards(len(batches)) if self._lazy_sharded else len(batches)
        kwargs: dict[str, Any] = dict(do_sample=False, max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self._lazy_pad_id, eos_token_id=eos)
        if self._lazy_sharded:
            kwargs["synced_gpus"] = True
        with torch.inference_mode():
            for idx in batches:
                items = [fetch(i) for i in idx]
                width = max(len(ids) for ids in items)
                ids = torch.full((len(idx), width), self._lazy_pad_id, dtype=torch.long)
                attn = torch.zeros((len(idx), width), dtype=torch.long)
                for r, seq in enumerate(items):
                    ids[r, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                    attn[r, width - len(seq):] = 1
                gen = model.generate(input_ids=ids.to(dev), attention_mask=attn.to(dev), **kwargs)
                for r, i in enumerate(idx):
                    out[i] = tok.decode(gen[r, width:], skip_special_tokens=True)
                self._count_forward(stats, "generations", len(idx), width + self.max_new_tokens, int(attn.sum()))
                del items, ids, attn, gen
            for _ in range(n_calls - len(batches)):
                idle = torch.full((1, 1), self._lazy_pad_id, dtype=torch.long, device=dev)
                model.generate(input_ids=idle, attention_mask=torch.ones_like(idle), **kwargs)
                self.idle_forwards += 1
                if stats is not None:
                    stats["idle_forwards"] += 1
        return out

    def keep_in_step(self, stats: Counter[str] | None = None) -> None:
        if self.max_new_tokens > 0:
            self.generate([], stats)
        else:
            super().keep_in_step(stats)

    def _templated_ids(self, prompt: str, steps: Sequence[str], stats: Counter[str] | None) -> list[int]:
        """Token ids of ``template(prompt, steps)``, cut from the left to ``max_length``."""
        text = self.template(prompt, list(steps))
        ids = list(self._lazy_tokenizer(text, add_special_tokens=self.add_bos)["input_ids"])
        if len(ids) > self.max_length:
            if self.truncation == "error":
                raise ValueError(f"PRM input of {len(ids)} tokens exceeds max_length={self.max_length}")
            if stats is not None:
                stats["truncated"] += 1
            ids = ids[len(ids) - self.max_length:]
        return ids

    def score(self, prompts, steps, *, stats=None):
        """Scores every prefix of every row. The prefixes are listed as ``(row, k, length)`` and
        their token ids built batch by batch (cut from the row's ids, or, with a template,
        tokenized again), so memory follows the token budget, not the quadratic total of all
        prefixes."""
        _check_inputs(prompts, steps)
        self._load()
        out: list[RowScores] = [None] * len(prompts)
        items: list[tuple[int, int]] = []   # (row, k): the prefix steps[row][:k]
        lengths: list[int] = []
        row_ids: dict[int, list[int]] = {}  # template=None: the row's tagged ids; prefix k ends at its k-th tag
        row_pos: dict[int, list[int]] = {}
        encoded = self.encode_many(prompts, steps) if self.template is None else None
        for i, (prompt, row) in enumerate(zip(prompts, steps)):
            if not row:
                out[i] = []
                continue
            if encoded is not None:
                fitted = self._fit(*encoded[i], stats)
                if fitted is None:
                    continue
                row_ids[i], row_pos[i] = fitted
                lengths += [p + 1 for p in row_pos[i]]
            else:
                # tokenized once here for the lengths (truncation counted here) and again when run
                lengths += [len(self._templated_ids(prompt, row[:k], stats)) for k in range(1, len(row) + 1)]
            items += [(i, k) for k in range(1, len(row) + 1)]

        def prefix_ids(j: int) -> list[int]:
            i, k = items[j]
            if encoded is not None:
                return row_ids[i][:row_pos[i][k - 1] + 1]
            return self._templated_ids(prompts[i], steps[i][:k], None)

        def read_at_last(j: int) -> tuple[list[int], list[int]]:
            ids = prefix_ids(j)
            return ids, [len(ids) - 1]

        if self.max_new_tokens > 0:
            verdicts = [self._parse(t) for t in self.generate_items(lengths, prefix_ids, stats)]
            bad_rows = {items[j][0] for j, v in enumerate(verdicts) if v is None}
            if stats is not None:
                stats["unparsed"] += len(bad_rows)
            flat = [[v] for v in verdicts]
        else:
            bad_rows = set()
            flat = self.run_items(lengths, read_at_last, stats)
        for (i, _), sc in zip(items, flat):
            if i in bad_rows:
                continue
            if out[i] is None:
                out[i] = []
            out[i].append(sc[0])
        return out


class RemoteScorer(StepScorer):
    """A scorer behind HTTP: ``POST url`` with ``{"prompts": [...], "steps": [[...]]}``.

    The server answers ``{"scores": [[float, ...] | null, ...]}`` (one list per row, one float per
    step) and may add ``"stats": {"truncated": n, ...}``. Rows are sent in chunks of
    ``batch_size``; a transport error or a 502/503/504 answer is retried ``retries`` times
    (:func:`rewardkit.http.request_json`), then raised.
    """

    def __init__(self, url: str, *, timeout: float = 60.0, batch_size: int = 64, retries: int = 2,
                 headers: dict[str, str] | None = None, takes_images: bool = False) -> None:
        self.url = url
        # a vision PRM behind the server: PRMReward then sends each row's images (as data URLs)
        self.takes_images = takes_images
        self.timeout = timeout
        self.batch_size = batch_size
        self.retries = retries
        self.headers = dict(headers or {})

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        from rewardkit.http import HTTPError, RetryPolicy, request_json

        try:
            return request_json("POST", self.url, payload, headers=self.headers, timeout=self.timeout,
                                retry=RetryPolicy(retries=self.retries, backoff_s=0.2))
        except HTTPError as exc:
            if exc.status is not None:  # the server answered: its error is not transient
                raise RuntimeError(f"PRM server {exc}") from None
            raise ConnectionError(f"PRM server {self.url} unreachable after {exc.attempts} tries: {exc}") from None

    def score(self, prompts, steps, *, stats=None):
        _check_inputs(prompts, steps)
        return score_over_http(self._post, prompts, steps, chunk_size=self.batch_size,
                               where=f"PRM server {self.url}", stats=stats)


def score_over_http(post: Callable[[dict[str, Any]], dict[str, Any]], prompts: Sequence[str],
                    steps: Sequence[Sequence[str]], *, chunk_size: int, where: str,
                    error: type[Exception] = RuntimeError, stats: Counter[str] | None = None) -> list[RowScores]:
    """The step-scoring protocol both HTTP clients speak (:class:`RemoteScorer` and
    :class:`rewardkit.serve.RemoteStepScorer`): rows go out ``chunk_size`` at a time as
    ``{"prompts", "steps"}``; the reply holds one score list (or null) per row with one float per
    step, and may add ``"stats"`` counts. A reply of the wrong shape raises ``error``."""
    out: list[RowScores] = []
    for a in range(0, len(prompts), chunk_size):
        chunk_p = [str(p) for p in prompts[a:a + chunk_size]]
        chunk_s = [list(s) for s in steps[a:a + chunk_size]]
        payload: dict[str, Any] = {"prompts": chunk_p, "steps": chunk_s}
        images = [getattr(p, "images", None) for p in prompts[a:a + chunk_size]]
        if any(images):  # multimodal prompts (rewardkit.prm.multimodal.ImagePrompt): one list per row
            from rewardkit.vision import encode_image

            payload["images"] = [[encode_image(i) for i in row] if row else None for row in images]
        reply = post(payload)
        scores = reply.get("scores")
        if not isinstance(scores, list) or len(scores) != len(chunk_p):
            got = len(scores) if isinstance(scores, list) else repr(scores)
            raise error(f"{where} returned {got} rows for {len(chunk_p)}")
        for row, sc in zip(chunk_s, scores):
            if sc is not None and (not isinstance(sc, list) or len(sc) != len(row)):
                got = len(sc) if isinstance(sc, list) else repr(sc)
                raise error(f"{where} returned {got} scores for {len(row)} steps")
            out.append(None if sc is None else [float(x) for x in sc])
        if stats is not None:
            for k, v in (reply.get("stats") or {}).items():
                stats[k] += int(v)
    return out


BACKENDS: dict[str, type[StepScorer]] = {"tagged": TaggedScorer, "prefix": PrefixScorer, "remote": RemoteScorer}


def make_scorer(backend: str = "tagged", **kwargs: Any) -> StepScorer:
    """Build a scorer by backend name: ``make_scorer("tagged", model=path, head="token_cls")``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown PRM backend {backend!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[backend](**kwargs)
