"""``dreamprm.prm``: a DreamPRM model behind the core PRM scorer interface, as a process reward.

v1 scores are aggregated by the mean log-odds of the step probabilities (clamped to
``[1e-6, 1 - 1e-6]`` first, so a confident PRM gives a large finite value, never inf/NaN); 1.5
scores by the mean p("+"). Steps are split by the DreamPRM template ("Step k" headers, the final
answer never scored in v1, appended as a step in 1.5), falling back to 1.5's heuristics. The PRM
sees the completion's own text: prefix i is the completion up to where step i+1 starts (blank
lines and text before "Step 1" kept), not the steps re-joined.

``mode="official"`` (v1) reproduces the released Best-of-N scoring: the released split
(:func:`~rewardkit_dreamprm.steps.released_prefix_ends`), the mean log-odds in float32 without a
clamp (a step probability of exactly 0 or 1 gives ±inf, which the core turns into an error or a
counted ``None``), and a completion without a step scored 0 (one pseudo-step of p = 0.5).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardkit import Batch, StepScores
from rewardkit.prm import PRMReward, StepScorer, prompt_images, prompt_text
from rewardkit_dreamprm.models import (
    DEFAULT_MAX_BATCH_TOKENS,
    EncodingError,
    GenerativePRM,
    ValueHeadPRM,
    _PRMBase,
)
from rewardkit_dreamprm.steps import Chain, make_chain, split_heuristic

VARIANTS = ("v1", "1.5")
MODES = ("default", "official")


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
    if isinstance(model, (str, os.PathLike)):
        from rewardkit_dreamprm.vision import is_vlm_checkpoint, vision_prm_class

        if is_vlm_checkpoint(model):  # a VLM: the PRM takes images (``tokenizer`` is then its processor)
            cls = vision_prm_class(variant)
    return cls.from_pretrained(model, tokenizer, **kw)


def dreamprm_spans(text: str) -> list[tuple[int, int]]:
    """v1 step spans: "Step k" headers (else 1.5 heuristics); the final answer line is not a step."""
    return split_heuristic(text)[0]


def released_mean_logodds(scores: Sequence[float]) -> float:
    """The released v1 Best-of-N aggregate: mean of log(p / (1 - p)) in float32, no clamp (the PRM's
    sigmoid output is float32; p = 1 gives inf, p = 0 gives -inf, both give NaN)."""
    total = np.float32(0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        for p in scores:
            p32 = np.float32(p)
            total = np.float32(total + np.log(p32 / (np.float32(1.0) - p32)))
        return float(np.float32(total / np.float32(len(scores))))


def v1_chain(question: str, text: str) -> Chain:
    """Default v1 chain: "Step k" headers (prefixes up to the next header, the final answer never a
    step), else 1.5's heuristics (each prefix ends with its step)."""
    return make_chain(question, text, "heuristic")


def dreamprm_spans_with_answer(text: str) -> list[tuple[int, int]]:
    """1.5 step spans: as :func:`dreamprm_spans`, plus the final answer line as the last step."""
    spans, fa = split_heuristic(text)
    return [*spans, fa] if fa is not None else spans


class DreamPRMScorer(StepScorer):
    """Core :class:`~rewardkit.prm.StepScorer` over a DreamPRM model (loaded lazily from a path, or
    an in-memory model that a training hook keeps updating)."""

    def __init__(self, model: Any, *, variant: str | None = None, tokenizer: Any = None, batch_size: int = 16,
                 max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS, device: str | None = None,
                 step_sep: str = "\n", **model_kwargs: Any) -> None:
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
        self.max_batch_tokens = max_batch_tokens
        self.device = device
        self.step_sep = step_sep
        self.model_kwargs = model_kwargs

    @property
    def prm(self) -> _PRMBase:
        if self._lazy_prm is None:
            if self.model_ref is None:
                raise RuntimeError("this scorer held an in-memory PRM and was pickled; pass a path instead")
            from rewardkit.trl import process_device, whole_model_loading

            with whole_model_loading():  # scored unsharded on every rank (no DeepSpeed engine here)
                prm = load_prm(self.model_ref, variant=self.variant,
                               tokenizer=self._lazy_tokenizer or self.tokenizer, **self.model_kwargs)
            dev = self.device or process_device()
            self._lazy_prm = prm.to(dev).eval()
            self.variant = prm.variant
        return self._lazy_prm

    def score_chains(self, chains: Sequence[Chain], *, stats: Counter[str] | None = None) -> list[list[float]]:
        """p(good) of every step of every chain, the PRM in eval mode, at most ``max_batch_tokens``
        padded tokens per forward."""
        prm = self.prm
        was_training = prm.training
        prm.eval()
        before, forwards = prm.truncated, prm.forwards
        try:
            scores = prm.score_chains(chains, batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens)
        except EncodingError:
            if stats is not None:
                stats["too_long"] += len(chains)
            raise
        finally:
            prm.train(was_training)
        if stats is not None:
            stats["truncated"] += prm.truncated - before
            stats["forwards"] += prm.forwards - forwards
        return scores

    @property
    def takes_images(self) -> bool:
        """True for a VLM PRM (``rewardkit_dreamprm.vision``): rows then bring their images."""
        from rewardkit_dreamprm.vision import is_vision_prm

        return is_vision_prm(self.prm)

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              stats: Counter[str] | None = None) -> list[list[float] | None]:
        """The core interface (steps already split): the steps are joined with ``step_sep``; an
        ``ImagePrompt``'s images go into the chain."""
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        chains = []
        for p, row in zip(prompts, steps):
            good = [s for s in row if s.strip()]
            image = getattr(p, "images", None) or None
            chains.append(Chain.from_steps(str(p), good, sep=self.step_sep, image=image) if good
                          else Chain(str(p), "", [], image=image))
        scores = self.score_chains(chains, stats=stats)
        # empty step strings were not scored; give the row no score rather than an invented one
        return [sc if len(sc) == len(row) else None for row, sc in zip(steps, scores)]


class DreamPRMReward(PRMReward):
    """``dreamprm.prm``: per-step DreamPRM scores, reduced by mean log-odds (v1) or mean p('+') (1.5).

    ``mode="official"`` (v1 only) reproduces the released Best-of-N scoring (module docstring).
    ``max_batch_tokens`` bounds the padded tokens of one forward (v1 scores one row per step
    prefix, so a long chain is spread over several forwards instead of one of steps × length).
    """

    def __init__(self, model: Any = None, *, variant: str | None = None, mode: str = "default",
                 reducer: str | None = None, splitter: Any = None, batch_size: int = 16,
                 max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS, device: str | None = None,
                 tokenizer: Any = None, think: bool = False, max_steps: int | None = None,
                 scorer: StepScorer | None = None, **kwargs: Any) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if scorer is None:
            if model is None:
                raise ValueError("dreamprm.prm needs model= (a DreamPRM checkpoint path, or a causal LM path "
                                 "with variant=)")
            scorer = DreamPRMScorer(model, variant=variant, tokenizer=tokenizer, batch_size=batch_size,
                                    max_batch_tokens=max_batch_tokens, device=device)
        if variant is None:
            variant = getattr(scorer, "variant", None)
            if variant is None and getattr(scorer, "model_ref", None):
                meta = os.path.join(scorer.model_ref, "dreamprm.json")
                variant = json.load(open(meta)).get("variant") if os.path.exists(meta) else "v1"
        variant = variant or "v1"
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if mode == "official" and variant != "v1":
            raise ValueError("mode='official' reproduces the released v1 Best-of-N scoring; DreamPRM-1.5's "
                             "released scoring is not reproduced here (use the default mode)")
        self.variant = variant
        self.mode = mode
        self.custom_splitter = splitter is not None
        if reducer is None:
            reducer = {"v1": "mean_logodds", "1.5": "mean"}[variant] if mode == "default" else released_mean_logodds
        splitter = splitter or (dreamprm_spans if variant == "v1" else dreamprm_spans_with_answer)
        super().__init__(scorer, reducer=reducer, splitter=splitter, think=think, max_steps=max_steps, **kwargs)

    def chain(self, prompt: str, text: str) -> Chain:
        """The chain the PRM scores for one completion."""
        if self.think or self.custom_splitter:  # spans from the core splitter (think region, custom rule)
            return Chain(prompt, text, self.split(text))
        if self.mode == "official":
            return make_chain(prompt, text, "official")
        if self.variant == "v1":
            return v1_chain(prompt, text)
        return make_chain(prompt, text, "heuristic", final_answer_step=True)

    def _merge_tail(self, chain: Chain) -> Chain:
        m = self.max_steps
        spans = chain.spans[: m - 1] + [(chain.spans[m - 1][0], chain.spans[-1][1])]
        ends = None if chain.prefix_ends is None else chain.prefix_ends[: m - 1] + [chain.prefix_ends[-1]]
        return Chain(chain.question, chain.response, spans, final_answer=chain.final_answer, prefix_ends=ends)

    def step_scores_batch(self, batch: Batch) -> list[StepScores | None]:
        if not isinstance(self.scorer, DreamPRMScorer):
            return super().step_scores_batch(batch)
        out: list[StepScores | None] = [None] * len(batch)
        rows, chains = [], []
        vision = self.scorer.takes_images
        for i in range(len(batch)):
            if batch.skip[i]:
                continue
            text = batch.texts[i]
            chain = self.chain(prompt_text(batch.prompts[i]), text)
            if self.max_steps is not None and len(chain) > self.max_steps:
                batch.counts["merged"] += 1
                chain = self._merge_tail(chain)
            if vision:  # the row's images (chat prompt parts or image/images column) go with its chain
                chain.image = prompt_images(batch.prompts[i], {k: v[i] for k, v in batch.columns.items()}) or None
            if len(chain) == 0:
                # released Best-of-N: no step -> one pseudo-score 0.5, mean log-odds 0; default: no score
                out[i] = StepScores([0.5], [(0, len(text))]) if self.mode == "official" else StepScores([], [])
                continue
            rows.append(i)
            chains.append(chain)
        stats: Counter[str] = Counter()
        if chains:
            scores = self.scorer.score_chains(chains, stats=stats)
        else:
            self.scorer.keep_in_step(stats)
            scores = []
        batch.counts.update({k: v for k, v in stats.items() if k in ("truncated", "too_long")})
        batch.extras["forwards"] = stats["forwards"]
        for i, chain, sc in zip(rows, chains, scores):
            out[i] = StepScores([float(x) for x in sc], list(chain.spans))
        return out

    def log_components(self, batch: Batch) -> None:
        super().log_components(batch)
        if "forwards" in batch.extras:  # PRM forward passes this call took (max_batch_tokens packing)
            batch.log_metric(f"rewardkit/{self.name}/forwards", float(batch.extras["forwards"]))
