"""``dreamprm.prm``: a DreamPRM model behind the core PRM scorer interface, as a process reward.

v1 scores are aggregated by the mean log-odds of the step probabilities (clamped to
``[1e-6, 1 - 1e-6]`` first, so a confident PRM gives a large finite value, never inf/NaN); 1.5
scores by the mean p("+"). Steps are split by the DreamPRM template ("Step k" headers, the final
answer line not scored in v1, appended as a step in 1.5), falling back to 1.5's heuristics.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rewardkit.prm import PRMReward, StepScorer
from rewardkit_dreamprm.models import EncodingError, GenerativePRM, ValueHeadPRM, _PRMBase
from rewardkit_dreamprm.steps import Chain, split_heuristic

VARIANTS = ("v1", "1.5")


def load_prm(model: Any, *, variant: str | None = None, tokenizer: Any = None, **kw: Any) -> _PRMBase:
    """A DreamPRM model from a path (``dreamprm.json`` beside it names the variant) or a causal LM."""
    if isinstance(model, _PRMBase):
        return model
    if variant is None and isinstance(model, (str, os.PathLike)):
        meta = os.path.join(str(model), "dreamprm.json")
        if os.path.exists(meta):
            with open(meta) as fh:
                variant = json.load(fh).get("variant")
    variant = variant or "v1"
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    cls = ValueHeadPRM if variant == "v1" else GenerativePRM
    return cls.from_pretrained(model, tokenizer, **kw)


def dreamprm_spans(text: str) -> list[tuple[int, int]]:
    """v1 step spans: "Step k" headers (else 1.5 heuristics); the final answer line is not a step."""
    return split_heuristic(text)[0]


def dreamprm_spans_with_answer(text: str) -> list[tuple[int, int]]:
    """1.5 step spans: as :func:`dreamprm_spans`, plus the final answer line as the last step."""
    spans, fa = split_heuristic(text)
    return [*spans, fa] if fa is not None else spans


class DreamPRMScorer(StepScorer):
    """Core :class:`~rewardkit.prm.StepScorer` over a DreamPRM model (loaded lazily from a path, or
    an in-memory model that a training hook keeps updating)."""

    def __init__(self, model: Any, *, variant: str | None = None, tokenizer: Any = None, batch_size: int = 16,
                 device: str | None = None, step_sep: str = "\n", **model_kwargs: Any) -> None:
        if isinstance(model, _PRMBase):
            self.model_ref = None
            self._lazy_prm = model
            variant = model.variant
        else:
            self.model_ref = str(model)
            self._lazy_prm = None
        self.variant = variant
        self.tokenizer = tokenizer if isinstance(tokenizer, (str, type(None))) else None
        self._lazy_tokenizer = None if isinstance(tokenizer, (str, type(None))) else tokenizer
        self.batch_size = batch_size
        self.device = device
        self.step_sep = step_sep
        self.model_kwargs = model_kwargs

    @property
    def prm(self) -> _PRMBase:
        if self._lazy_prm is None:
            if self.model_ref is None:
                raise RuntimeError("this scorer held an in-memory PRM and was pickled; pass a path instead")
            from rewardkit.trl.placement import process_device, whole_model_loading

            with whole_model_loading():  # scored unsharded on every rank (no DeepSpeed engine here)
                prm = load_prm(self.model_ref, variant=self.variant,
                               tokenizer=self._lazy_tokenizer or self.tokenizer, **self.model_kwargs)
            dev = self.device or process_device()
            self._lazy_prm = prm.to(dev).eval()
            self.variant = prm.variant
        return self._lazy_prm

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              stats: Counter[str] | None = None) -> list[list[float] | None]:
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        chains = []
        for p, row in zip(prompts, steps):
            good = [s for s in row if s.strip()]
            chains.append(Chain.from_steps(p, good, sep=self.step_sep) if good else Chain(p, "", []))
        prm = self.prm
        was_training = prm.training
        prm.eval()
        before = prm.truncated
        try:
            scores = prm.score_chains(chains, batch_size=self.batch_size)
        except EncodingError:
            if stats is not None:
                stats["too_long"] += len(chains)
            raise
        finally:
            prm.train(was_training)
        if stats is not None:
            stats["truncated"] += prm.truncated - before
            stats["forwards"] += 1
        out: list[list[float] | None] = []
        for row, sc in zip(steps, scores):
            # empty step strings were not scored; give them no score rather than an invented one
            if len(sc) != sum(1 for s in row if s.strip()):
                out.append(None)
            elif len(sc) != len(row):
                out.append(None)
            else:
                out.append(sc)
        return out


class DreamPRMReward(PRMReward):
    """``dreamprm.prm``: per-step DreamPRM scores, reduced by mean log-odds (v1) or mean p('+') (1.5)."""

    def __init__(self, model: Any = None, *, variant: str | None = None, reducer: str | None = None,
                 splitter: Any = None, batch_size: int = 16, device: str | None = None, tokenizer: Any = None,
                 think: bool = False, max_steps: int | None = None, scorer: StepScorer | None = None,
                 **kwargs: Any) -> None:
        if scorer is None:
            if model is None:
                raise ValueError("dreamprm.prm needs model= (a DreamPRM checkpoint path, or a causal LM path "
                                 "with variant=)")
            scorer = DreamPRMScorer(model, variant=variant, tokenizer=tokenizer, batch_size=batch_size,
                                    device=device)
        if variant is None:
            variant = getattr(scorer, "variant", None)
            if variant is None and getattr(scorer, "model_ref", None):
                meta = os.path.join(scorer.model_ref, "dreamprm.json")
                variant = json.load(open(meta)).get("variant") if os.path.exists(meta) else "v1"
        variant = variant or "v1"
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        reducer = reducer or ("mean_logodds" if variant == "v1" else "mean")
        splitter = splitter or (dreamprm_spans if variant == "v1" else dreamprm_spans_with_answer)
        super().__init__(scorer, reducer=reducer, splitter=splitter, think=think, max_steps=max_steps, **kwargs)
