"""Every reward of ReasonFlux-PRM (the classes the plugin registers).

* ``reasonflux.coherence``  contrastive coherence of consecutive thinking steps (process)
* ``reasonflux.alignment``  cosine of each thinking step with the final response (process)
* ``reasonflux.quality``    an expert judge's grade of each thinking step (process)
* ``reasonflux.step``       the three mixed per step by softmax-over-values weights (process)
* ``reasonflux.trajectory`` template-guided verification: success rate of a policy that solves the
  question N times under a judge-written reasoning template (outcome)
* ``reasonflux.prm``        a trained ReasonFlux PRM (:class:`ReasonFluxPRMReward`, defined in
  :mod:`rewardkit_reasonflux.prm` beside its input encoding; re-exported here) (process)
* ``reasonflux.rl``         the released GRPO worker's whole reward (:class:`ReleasedRLReward`) (outcome)

All process rewards score the *thinking* steps (``<think>`` block, or see ``no_think``) and reduce
them with ``reducer`` (default ``mean``, as in the paper's Eq. 11). A row with empty thinking has
no steps and no value (``None``, counted under ``rewardkit/<name>/empty_thinking``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rewardkit import Batch, ProcessReward, Reward, RewardInputError, StepScores, get_reward
from rewardkit_reasonflux import official
from rewardkit_reasonflux.components import (
    AlignTarget,
    FirstStep,
    JudgeAnswerError,
    NegativeBank,
    OnMalformed,
    StepValues,
    alignment_values,
    build_judge,
    coherence_values,
    quality_values,
    softmax_combine,
)
from rewardkit_reasonflux.config import OFFICIAL_BETA
from rewardkit_reasonflux.embed import DEFAULT_BATCH_SIZE, Embedder, make_embedder
from rewardkit_reasonflux.judge import CachedGenerator, load_template, render
from rewardkit_reasonflux.prm import ReasonFluxPRM, ReasonFluxPRMReward
from rewardkit_reasonflux.sample import ReasonSample, SampleParser

__all__ = [
    "AlignmentReward",
    "CoherenceReward",
    "JudgeAnswerError",
    "QualityReward",
    "ReasonFluxPRM",
    "ReasonFluxPRMReward",
    "ReasonFluxStepReward",
    "ReleasedRLReward",
    "StepReward",
    "TrajectoryReward",
]

COMPONENTS = ("alignment", "quality", "coherence")

def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


class ReasonFluxStepReward(ProcessReward):
    """Shared machinery: parse rows into (question, thinking steps, response), score steps, log.

    Args:
        split: step splitter (default blank lines, as the paper).
        thinking_column / response_column / question_column: read parts from dataset columns.
        no_think: how to read a completion with no ``<think>`` block (see :class:`SampleParser`).
        reducer: per-trajectory reduction of the step scores (default ``mean``).
    """

    def __init__(self, *, split: Any = "blank_line", thinking_column: str | None = None,
                 response_column: str | None = None, question_column: str | None = None,
                 no_think: str = "split_last", reducer: Any = "mean", **kwargs: Any) -> None:
        super().__init__(reducer=reducer, **kwargs)
        self.parser = SampleParser(split=split, thinking_column=thinking_column, response_column=response_column,
                                   question_column=question_column, no_think=no_think)  # type: ignore[arg-type]

    # -- to implement -----------------------------------------------------------------------
    def step_values(self, samples: list[ReasonSample | None], batch: Batch,
                    stats: dict[str, Any]) -> list[StepValues | None]:
        raise NotImplementedError

    # -- machinery ----------------------------------------------------------------------------
    def parse_batch(self, batch: Batch) -> list[ReasonSample | None]:
        return self.each_row(batch, lambda i: self.parser.parse_sample(batch.sample(i)))

    def step_scores_batch(self, batch: Batch) -> list[StepScores | None]:
        samples = self.parse_batch(batch)
        stats: dict[str, Any] = {"empty_thinking": 0}
        live = [s if s is not None and s.thinking else None for s in samples]
        values = self.step_values(live, batch, stats)
        if len(values) != len(samples):
            raise RewardInputError(f"{self.name}: {len(values)} step-value rows for {len(samples)} samples")
        out: list[StepScores | None] = []
        for s, v in zip(samples, values):
            if s is None:
                out.append(None)
            elif not s.thinking:
                stats["empty_thinking"] += 1
                out.append(StepScores([], []))
            elif v is None:
                out.append(None)
            else:
                kept = [(val, step.span) for val, step in zip(v, s.thinking) if val is not None]
                out.append(StepScores([k[0] for k in kept], [k[1] for k in kept]))
        batch.extras["stats"] = stats
        return out

    def log_components(self, batch: Batch) -> None:
        stats: dict[str, Any] = batch.extras.get("stats", {})
        for key, value in stats.items():
            if isinstance(value, int):
                self.counters[key] += value
        for key, value in sorted(stats.items()):
            if isinstance(value, int):
                batch.log_metric(f"rewardkit/{self.name}/{key}", float(value))
            elif isinstance(value, list):  # per-step values of a component or weight: log their mean
                finite = [x for x in value if x is not None and math.isfinite(x)]
                if finite:
                    batch.log_metric(f"{self.name}/{key}_mean", _mean(finite))


# -- embedding rewards ----------------------------------------------------------------------------

class _EmbeddingMixin:
    embedder: Embedder

    def _init_embedder(self, encoder: Any, batch_size: int, device: str | None) -> None:
        self.embedder = make_embedder(encoder, batch_size=batch_size, device=device)


class CoherenceReward(_EmbeddingMixin, ReasonFluxStepReward):
    """r_t^coh = log softmax of cos(Φ(s_{t-1}), Φ(s_t))/τ against negatives from other trajectories.

    Args:
        encoder: sentence encoder (None: offline MiniLM; a path/id; an object with ``encode``; an Embedder).
        tau: temperature τ (default 0.1).
        num_negatives: |N|, negatives per trajectory, drawn from other rows of the batch (rows with a
            different question first), then from earlier batches, then from same-question rows.
        include_positive: keep s_t in the denominator (InfoNCE; r ≤ 0). False: negatives only.
        first_step: ``"question"`` (the question stands in for s_0) or ``"skip"`` (step 1 unscored).
        bank_size: how many earlier steps are kept as fallback negatives (0: none).
        seed: seed of the negative sampling (stable for the same content).
    A row with no negative available has no coherence (``None``, counted as ``no_negatives``).
    """

    def __init__(self, *, encoder: Any = None, tau: float = 0.1, num_negatives: int = 8,
                 include_positive: bool = True, first_step: FirstStep = "question", bank_size: int = 256,
                 seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if first_step not in ("question", "skip"):
            raise ValueError(f"first_step must be 'question' or 'skip', got {first_step!r}")
        self._init_embedder(encoder, batch_size, device)
        self.tau, self.num_negatives, self.include_positive = tau, num_negatives, include_positive
        self.first_step, self.bank_size, self.seed = first_step, bank_size, seed
        self._lazy_bank: NegativeBank | None = None

    def _bank(self) -> NegativeBank:
        if self._lazy_bank is None:
            self._lazy_bank = NegativeBank(self.bank_size)
        return self._lazy_bank

    def step_values(self, samples, batch, stats):
        vals = coherence_values(samples, self.embedder, tau=self.tau, num_negatives=self.num_negatives,
                                include_positive=self.include_positive, first_step=self.first_step,
                                seed=self.seed, bank=self._bank(), stats=stats)
        stats["coherence"] = [x for v in vals if v for x in v]
        return vals


class AlignmentReward(_EmbeddingMixin, ReasonFluxStepReward):
    """r_t^align = cosine of each thinking step with the response.

    Args:
        target: ``"best_step"`` (max over the response's steps, default) or ``"whole"`` (the whole
            response as one text).
        encoder, batch_size, device: as for ``reasonflux.coherence``.
    A row with an empty response has no alignment (``None``, counted as ``empty_response``).
    """

    def __init__(self, *, encoder: Any = None, target: AlignTarget = "best_step",
                 batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if target not in ("best_step", "whole"):
            raise ValueError(f"target must be 'best_step' or 'whole', got {target!r}")
        self._init_embedder(encoder, batch_size, device)
        self.target = target

    def step_values(self, samples, batch, stats):
        vals = alignment_values(samples, self.embedder, target=self.target, stats=stats)
        stats["alignment"] = [x for v in vals if v for x in v]
        return vals


# -- judge reward -----------------------------------------------------------------------------------

class QualityReward(ReasonFluxStepReward):
    """r_t^qual = J(s_t | x, s_<t, a): an expert judge grades each thinking step in [0, 1].

    Args:
        judge: the backend (:class:`~rewardkit_reasonflux.judge.JudgeBackend`, local model path, dict
            spec ``{"type": "openai", "base_url", "model", ...}``, a callable, or a ready ``Judge``).
        template: prompt template (bundled ``quality``, a file, or text with ``{{question}}``,
            ``{{previous_steps}}``, ``{{step}}``, ``{{response}}``).
        scale: a bare number in the answer is divided by it (the bundled prompt asks for 0–10).
        choices: True constrains answers to ``Score: 0..scale`` where the backend supports it.
        max_context_chars: earlier steps shown to the judge are cut to their last N characters.
        on_malformed: an answer that is not a score makes the row ``None`` (``"none"``, default),
            drops that step (``"skip_step"``) or raises (``"raise"``); always counted as
            ``rewardkit/<name>/judge_malformed``.
        cache_path: SQLite file caching judge answers across runs (by content hash).
    """

    def __init__(self, *, judge: Any = None, template: str = "quality", scale: float = 10.0,
                 max_tokens: int = 16, choices: Any = False, max_context_chars: int | None = 6000,
                 on_malformed: OnMalformed = "none", cache_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if on_malformed not in ("none", "skip_step", "raise"):
            raise ValueError(f"on_malformed must be 'none', 'skip_step' or 'raise', got {on_malformed!r}")
        self.judge = build_judge(judge, template=template, scale=scale, max_tokens=max_tokens, choices=choices,
                                 cache_path=cache_path, what="reasonflux.quality")
        missing = {"step"} - self.judge.fields
        if missing:
            raise ValueError(f"quality template must contain {{{{step}}}}; it has {sorted(self.judge.fields)}")
        self.max_context_chars = max_context_chars
        self.on_malformed = on_malformed

    def step_values(self, samples, batch, stats):
        vals = quality_values(samples, self.judge, max_context_chars=self.max_context_chars,
                              on_malformed=self.on_malformed, stats=stats)
        stats["quality"] = [x for v in vals if v for x in v if x is not None]
        return vals


# -- combined step reward -----------------------------------------------------------------------------

class StepReward(_EmbeddingMixin, ReasonFluxStepReward):
    """r_t^step = Σ_k w_k r_t^k over k ∈ {alignment, quality, coherence}.

    ``weighting="softmax"`` (the paper): w = softmax(r_t^align, r_t^qual, r_t^coh) per step, on the
    raw values (coherence is a log-probability ≤ 0, so it usually gets the least weight; the mean
    weight of each component is logged as ``<name>/weight_<component>_mean``). ``"fixed"``: the
    ``weights`` dict, normalised to sum 1 over the components present at that step.

    Args:
        components: which signals to mix (default all three; without a judge use
            ``["alignment", "coherence"]``).
        judge, template, scale, choices, max_context_chars, on_malformed, cache_path: for quality.
        encoder, tau, num_negatives, include_positive, first_step, bank_size, seed, target: for the
            embedding signals (one shared, batched encoder).
    A component that has no value for the whole row (no negatives, no response, bad judge answer
    under ``on_malformed="none"``) makes the row ``None``; a step-level gap (step 1 with
    ``first_step="skip"``) is mixed from the components present.
    """

    def __init__(self, *, components: Sequence[str] = COMPONENTS, weighting: str = "softmax",
                 weights: dict[str, float] | None = None, encoder: Any = None, judge: Any = None,
                 template: str = "quality", scale: float = 10.0, max_tokens: int = 16, choices: Any = False,
                 max_context_chars: int | None = 6000, on_malformed: OnMalformed = "none",
                 cache_path: str | None = None, tau: float = 0.1, num_negatives: int = 8,
                 include_positive: bool = True, first_step: FirstStep = "question", bank_size: int = 256,
                 seed: int = 0, target: AlignTarget = "best_step", batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        comps = tuple(components)
        unknown = set(comps) - set(COMPONENTS)
        if unknown or not comps:
            raise ValueError(f"components must be a non-empty subset of {COMPONENTS}, got {list(comps)}")
        if weighting not in ("softmax", "fixed"):
            raise ValueError(f"weighting must be 'softmax' or 'fixed', got {weighting!r}")
        if weighting == "fixed":
            weights = dict(weights or {c: 1.0 for c in comps})
            bad = set(weights) - set(COMPONENTS)
            if bad or any(w < 0 for w in weights.values()) or sum(weights.get(c, 0) for c in comps) <= 0:
                raise ValueError(f"weights must map components {comps} to non-negative numbers with a positive "
                                 f"sum; got {weights}")
        self.components, self.weighting, self.weights = comps, weighting, weights
        self._init_embedder(encoder, batch_size, device)
        self.judge = None
        if "quality" in comps:
            if judge is None:
                raise ValueError("reasonflux.step mixes the judge's quality score: pass judge=... (see "
                                 "reasonflux.quality) or components=['alignment', 'coherence']")
            self.judge = build_judge(judge, template=template, scale=scale, max_tokens=max_tokens, choices=choices,
                                     cache_path=cache_path, what="reasonflux.step")
        self.max_context_chars, self.on_malformed = max_context_chars, on_malformed
        self.tau, self.num_negatives, self.include_positive = tau, num_negatives, include_positive
        self.first_step, self.bank_size, self.seed, self.target = first_step, bank_size, seed, target
        self._lazy_bank: NegativeBank | None = None

    def component_values(self, samples: list[ReasonSample | None],
                         stats: dict[str, Any]) -> dict[str, list[StepValues | None]]:
        out: dict[str, list[StepValues | None]] = {}
        # one model call for the whole batch: every text either signal needs (negatives come from the
        # other rows' steps or from the bank of earlier, already-encoded steps)
        warm: list[str] = []
        align, coh = "alignment" in self.components, "coherence" in self.components
        for s in samples:
            if s is None:
                continue
            warm += s.thinking_texts
            if coh and self.first_step == "question":
                warm.append(s.question)
            if align:
                warm += s.response_texts if self.target == "best_step" else [s.response]
        self.embedder.lookup([t for t in warm if t])
        if "alignment" in self.components:
            out["alignment"] = alignment_values(samples, self.embedder, target=self.target, stats=stats)
        if "coherence" in self.components:
            if self._lazy_bank is None:
                self._lazy_bank = NegativeBank(self.bank_size)
            out["coherence"] = coherence_values(samples, self.embedder, tau=self.tau,
                                                num_negatives=self.num_negatives,
                                                include_positive=self.include_positive, first_step=self.first_step,
                                                seed=self.seed, bank=self._lazy_bank, stats=stats)
        if "quality" in self.components:
            assert self.judge is not None
            out["quality"] = quality_values(samples, self.judge, max_context_chars=self.max_context_chars,
                                            on_malformed=self.on_malformed, stats=stats)
        return out

    def step_values(self, samples, batch, stats):
        comp = self.component_values(samples, stats)
        result: list[StepValues | None] = []
        per_comp: dict[str, list[float]] = {c: [] for c in self.components}
        per_weight: dict[str, list[float]] = {c: [] for c in self.components}
        shared: list[dict[str, StepValues | None] | None] = []
        for i, s in enumerate(samples):
            if s is None:
                result.append(None)
                shared.append(None)
                continue
            rows = {c: comp[c][i] for c in self.components}
            shared.append(rows)
            if any(v is None for v in rows.values()):
                result.append(None)
                continue
            vals: StepValues = []
            for t in range(len(s.thinking)):
                step_vals = {c: rows[c][t] for c in self.components}  # type: ignore[index]
                combined, w = softmax_combine(step_vals, weighting=self.weighting, weights=self.weights)
                vals.append(combined)
                for c, v in step_vals.items():
                    if v is not None:
                        per_comp[c].append(v)
                        per_weight[c].append(w.get(c, 0.0))
            result.append(vals)
        for c in self.components:
            stats[c] = per_comp[c]
            stats[f"weight_{c}"] = per_weight[c]
        batch.share("components", shared)  # each row's per-step values of every component
        return result


# -- trajectory reward ------------------------------------------------------------------------------

class TrajectoryReward(Reward):
    """r^final: template-guided verification (paper §3.2).

    The judge reads (question, thinking, response) and writes a high-level reasoning template; a
    policy then solves the question ``n`` times conditioned on (question, template); the reward is
    the fraction of those solutions that ``math.accuracy`` finds equal to the gold answer.

    Args:
        judge: the template writer (any judge backend spec).
        policy: the proxy policy that solves under the template (default: the judge's backend).
        n: solutions per question (default 8); temperature: their sampling temperature (0.7).
        gold_column: dataset column with the gold answer (default ``solution``).
        writer_template / solve_template: prompt templates (bundled ``template_writer`` /
            ``solve_with_template``; fields ``{{question}} {{thinking}} {{response}}`` and
            ``{{question}} {{template}}``).
        template_max_tokens / solve_max_tokens: generation budgets.
        max_thinking_chars: the thinking shown to the writer is cut to its last N characters.
        cache_path: SQLite cache for templates and solutions (by content hash).
    A row without a gold answer or with an unparseable gold is ``None``.
    """

    def __init__(self, *, judge: Any = None, policy: Any = None, n: int = 8, temperature: float = 0.7,
                 gold_column: str = "solution", writer_template: str = "template_writer",
                 solve_template: str = "solve_with_template", template_max_tokens: int = 256,
                 solve_max_tokens: int = 512, max_thinking_chars: int | None = 8000, seed: int = 0,
                 split: Any = "blank_line", thinking_column: str | None = None, response_column: str | None = None,
                 question_column: str | None = None, no_think: str = "all", cache_path: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if judge is None:
            raise ValueError("reasonflux.trajectory needs judge=... to write the reasoning templates "
                             "(and policy=... to solve under them; default the judge's backend)")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.writer = judge if isinstance(judge, CachedGenerator) else CachedGenerator(judge, cache_path=cache_path)
        self.policy = (self.writer if policy is None else
                       policy if isinstance(policy, CachedGenerator) else CachedGenerator(policy, cache_path=cache_path))
        self.n, self.temperature, self.seed = n, temperature, seed
        self.gold_column = gold_column
        self.writer_template = load_template(writer_template)
        self.solve_template = load_template(solve_template)
        self.template_max_tokens, self.solve_max_tokens = template_max_tokens, solve_max_tokens
        self.max_thinking_chars = max_thinking_chars
        self.parser = SampleParser(split=split, thinking_column=thinking_column, response_column=response_column,
                                   question_column=question_column, no_think=no_think)  # type: ignore[arg-type]
        self.accuracy = get_reward("math.accuracy", gold_column="gold", on_error="none")
        self.accuracy.name = f"{self.name or 'reasonflux.trajectory'}/accuracy"

    def _thinking(self, s: ReasonSample) -> str:
        text = "\n\n".join(s.thinking_texts) or "(none)"
        if self.max_thinking_chars is not None and len(text) > self.max_thinking_chars:
            text = "[...]\n\n" + text[-self.max_thinking_chars:]
        return text

    def score_batch(self, batch: Batch) -> list[float | None]:
        if self.gold_column not in batch.columns:
            raise RewardInputError(f"reward {self.name!r} needs gold answers in column {self.gold_column!r}; "
                                   f"columns passed: {sorted(batch.columns) or 'none'}")
        todo: list[tuple[int, ReasonSample, str]] = []
        for i in range(len(batch)):
            if batch.skip[i]:
                continue
            gold = batch.columns[self.gold_column][i]
            if gold is None or not str(gold).strip():
                continue
            try:
                s = self.parser.parse_sample(batch.sample(i))
            except Exception as exc:
                self._swallow(exc, 1, batch)
                continue
            if s is not None:
                todo.append((i, s, str(gold)))
        out: list[float | None] = [None] * len(batch)
        written: list[str | None] = [None] * len(batch)
        solved: list[list[str] | None] = [None] * len(batch)
        if todo:
            self._solve(todo, out, written, solved)
        # the judge's template and the policy's solutions of each row, for inspection
        batch.share("templates", written)
        batch.share("solutions", solved)
        return out

    def _solve(self, todo: list[tuple[int, ReasonSample, str]], out: list[float | None],
               written: list[str | None], solved: list[list[str] | None]) -> None:
        """Write a template per row, solve each question ``n`` times under it, fill the rows' success rates."""
        writer_prompts = [render(self.writer_template, question=s.question, thinking=self._thinking(s),
                                 response=s.response or "(empty)") for _, s, _ in todo]
        templates = [a[0].strip() for a in self.writer.generate(writer_prompts, max_tokens=self.template_max_tokens,
                                                                 temperature=0.0, n=1)]
        solve_prompts = [render(self.solve_template, question=s.question, template=t or "(no template)")
                         for (_, s, _), t in zip(todo, templates)]
        solutions = self.policy.generate(solve_prompts, max_tokens=self.solve_max_tokens,
                                         temperature=self.temperature, n=self.n, seed=self.seed)
        flat_q: list[str] = []
        flat_c: list[str] = []
        flat_g: list[str] = []
        for (_, s, gold), sols in zip(todo, solutions):
            flat_q += [s.question] * len(sols)
            flat_c += sols
            flat_g += [gold] * len(sols)
        correct = self.accuracy(flat_q, flat_c, gold=flat_g)
        pos = 0
        for (i, _, _), t, sols in zip(todo, templates, solutions):
            vals = correct[pos:pos + len(sols)]
            pos += len(sols)
            written[i], solved[i] = t, list(sols)
            if any(v is None for v in vals):  # gold that does not parse: not a 0, the row does not apply
                continue
            out[i] = float(sum(vals) / len(vals))  # type: ignore[arg-type]


# -- the released RL reward ----------------------------------------------------------------------

class ReleasedRLReward(Reward):
    """The released GRPO worker's whole per-sample reward, as one reward function (``reasonflux.rl``).

    ``float32(beta * PRM + (1 - beta) * rule)`` where PRM is ``reasonflux.prm`` in official mode and
    rule is the released strict-box check (:func:`rewardkit_reasonflux.official.strict_box_score`:
    the last ``\\boxed{}`` of the response's last 100 characters equals the gold string). Use it
    alone (weight 1) to get the released numbers bit for bit; :func:`~rewardkit_reasonflux.config.grpo_mix`
    lets TRL weight separate rewards instead (float32 sums, ``math.accuracy`` as the rule).

    Args:
        model: the PRM (path); beta: the PRM's share (released: 0.75).
        gold_column: dataset column with the ground truth (compared as a string).
        prm_params: further ``reasonflux.prm`` arguments (``policy_tokenizer``, ``max_length``, ...).
    A row whose PRM score is None (the released code raises there) or whose gold is missing is None.
    """

    def __init__(self, *, model: Any = None, beta: float = OFFICIAL_BETA, gold_column: str = "solution",
                 prm_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        params = dict(prm_params or {})
        params["mode"] = "official"
        self.prm = ReasonFluxPRMReward(model=model, name=f"{self.name or 'reasonflux.rl'}/prm", **params)
        self.beta, self.gold_column = float(beta), gold_column

    def score_batch(self, batch: Batch) -> list[float | None]:
        if self.gold_column not in batch.columns:
            raise RewardInputError(f"reward {self.name!r} needs gold answers in column {self.gold_column!r}; "
                                   f"columns passed: {sorted(batch.columns) or 'none'}")
        prm = self.prm.score_batch(batch)
        golds = batch.columns[self.gold_column]
        rule: list[float | None] = [None if (batch.skip[i] or golds[i] is None) else
                                    official.strict_box_score(batch.texts[i], str(golds[i]))
                                    for i in range(len(batch))]
        batch.share("prm_scores", prm)
        batch.share("rule_scores", rule)
        return [None if p is None or r is None else official.released_mix(p, r, self.beta)
                for p, r in zip(prm, rule)]

    def log_components(self, batch: Batch) -> None:
        self.prm.log_components(batch)
        for key in ("prm", "rule"):
            got = [v for v in batch.details.get(f"{key}_scores", []) if v is not None]
            if got:
                batch.log_metric(f"{self.name}/{key}_mean", sum(got) / len(got))
