"""``reasonflux.prm``: a trained ReasonFlux PRM's score through the core PRM scorer.

The two released checkpoints have different interfaces (spec §3), both supported here:

* ``interface="step_tag"`` (ReasonFlux-PRM-7B, the Qwen2.5-Math-PRM interface): a token-classifier
  PRM; the chat template puts the question in the user turn and the steps, each followed by
  ``<extra_0>``, in the assistant turn; a step's score is softmax(logits)[positive_label] at its tag.
* ``interface="scalar"`` (ReasonFlux-PRM-1.5B): one score per sequence, sigmoid of a one-logit
  head at the last token of the raw text ``question + completion`` (no chat template, no tags); a
  ``*ForSequenceClassification`` model with ``num_labels=1`` (see :func:`convert_scalar_checkpoint`
  for the released ``reward_head.pt`` layout).

``mode="paper"`` (default, Eq. 11): the PRM sees the thinking steps and then the response as a
final step; ``r̂ = mean_t r̂_t + alpha * r̂_final`` with r̂_t the scores at the thinking steps' tags
and r̂_final the score at the response's tag (or at the last token, ``read_at="last_token"``). A
completion without thinking steps uses the response's score as its step mean.

``mode="official"`` (the released code, see :mod:`rewardkit_reasonflux.official`): for ``step_tag``
the released verl RL worker's score: the policy prompt decoded without special tokens is the user
turn (chat prompts rendered with ``policy_tokenizer``'s template first), the completion **as it is**
(not stripped) plus one ``<extra_0>`` the assistant turn, the whole text tokenized in one call and cut
from the right at ``max_length``; the score is P(positive) at the last token (after ``<|im_end|>``;
``read_at="separator"`` reads it at the tag instead) rounded to bfloat16, with the released
helper's quirks when a probability underflows; no alpha term. For ``scalar`` the 1.5B README:
``question + completion`` truncated from the right (2048 tokens), sigmoid at the last token.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Literal

from rewardkit import STEP_SCORES, Batch, ProcessReward, StepScores, split_steps, split_thinking
from rewardkit.prm import TaggedScorer, prompt_text
from rewardkit_reasonflux import official

Interface = Literal["step_tag", "scalar"]
INTERFACE_ALIASES = {"step_tag": "step_tag", "7b": "step_tag", "tagged": "step_tag",
                     "scalar": "scalar", "1.5b": "scalar", "last_token": "scalar"}
DEFAULT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
TRAJECTORY_SCORES = "trajectory_scores"  # the detail holding each row's trajectory score (r̂_final)


class ChatPrompt:
    """Picklable ``prompt -> text`` for the scorer: the tokenizer's chat template up to the
    assistant turn (system + user = question), loaded lazily from ``tokenizer``."""

    def __init__(self, tokenizer: str, system: str | None = DEFAULT_SYSTEM) -> None:
        self.tokenizer = str(tokenizer)
        self.system = system
        self._lazy_tok: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}

    def tok(self):
        if self._lazy_tok is None:
            from transformers import AutoTokenizer

            self._lazy_tok = AutoTokenizer.from_pretrained(self.tokenizer)
        return self._lazy_tok

    def messages(self, question: str, answer: str | None = None) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.append({"role": "user", "content": question})
        if answer is not None:
            msgs.append({"role": "assistant", "content": answer})
        return msgs

    def __call__(self, question: str) -> str:
        tok = self.tok()
        if not getattr(tok, "chat_template", None):
            return question + "\n"
        return tok.apply_chat_template(self.messages(question), tokenize=False, add_generation_prompt=True)

    def suffix(self) -> str:
        """What the template writes after the assistant's content (``<|im_end|>\\n`` for Qwen)."""
        tok = self.tok()
        if not getattr(tok, "chat_template", None):
            return ""
        marker = "\x00ANSWER\x00"
        full = tok.apply_chat_template(self.messages("q", marker), tokenize=False)
        return full.split(marker, 1)[1] if marker in full else ""


class ReasonFluxPRMReward(ProcessReward):
    """A ReasonFlux PRM as a reward (see the module docstring for interfaces and modes).

    Args:
        model: path or id of the PRM (token-classification for ``step_tag``, one-label
            sequence-classification for ``scalar``), or a ready :class:`rewardkit.prm.HFStepScorer`.
        interface: ``"step_tag"`` (alias ``"7b"``) or ``"scalar"`` (alias ``"1.5b"``).
        mode: ``"paper"`` (Eq. 11) or ``"official"`` (released RL code: whole response, one score).
        alpha: weight of the trajectory score in Eq. 11 (default 1.0, the paper's main setting).
        read_at: where the trajectory score is read: ``"separator"`` (the last ``<extra_0>``) or
            ``"last_token"`` (after the chat template's end of turn). Default: ``separator`` in
            paper mode, ``last_token`` in official mode.
        step_tag: the separator token (``<extra_0>``); system_prompt: the PRM chat's system turn.
        positive_label: the "good" class of the 2-class head.
        split: how thinking and response are split into steps (paper: blank lines).
        response_as: ``"one_step"`` (the response is one final step, default) or ``"steps"``.
        max_length: longest PRM input. Paper mode (default 4096): longer inputs lose question tokens
            from the left, and when the steps alone do not fit the row is ``None`` (counted as
            ``too_long``). Official mode: cut from the right like the released code (default 16896,
            the released scripts' prompt + response length, for ``step_tag``; 2048, the README's, for
            ``scalar``).
        policy_tokenizer: official mode, ``step_tag``: the policy's tokenizer (path), which renders and
            decodes the prompt as the worker's ``input_tokenizer`` does (default: the PRM's tokenizer;
            the released setup assumes they share a vocabulary).
    """

    def __init__(self, *, model: Any = None, interface: str = "step_tag", mode: str = "paper", alpha: float = 1.0,
                 read_at: str | None = None, step_tag: str = "<extra_0>", system_prompt: str | None = DEFAULT_SYSTEM,
                 positive_label: int = 1, split: Any = "blank_line", response_as: str = "one_step",
                 max_length: int | None = None, policy_tokenizer: str | None = None, batch_size: int = 8,
                 device: str | None = None, model_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("reducer", "mean")
        super().__init__(**kwargs)
        if model is None:
            raise ValueError("reasonflux.prm needs model= (a path to a ReasonFlux-style PRM)")
        if interface not in INTERFACE_ALIASES:
            raise ValueError(f"interface must be one of {sorted(INTERFACE_ALIASES)}, got {interface!r}")
        if mode not in ("paper", "official"):
            raise ValueError(f"mode must be 'paper' or 'official', got {mode!r}")
        self.interface = INTERFACE_ALIASES[interface]
        self.mode = mode
        if read_at is None:
            read_at = "last_token" if mode == "official" else "separator"
        if read_at not in ("separator", "last_token"):
            raise ValueError(f"read_at must be 'separator' or 'last_token', got {read_at!r}")
        if response_as not in ("one_step", "steps"):
            raise ValueError(f"response_as must be 'one_step' or 'steps', got {response_as!r}")
        self.alpha, self.read_at, self.split, self.response_as = float(alpha), read_at, split, response_as
        if max_length is None:
            max_length = (4096 if mode == "paper" else
                          official.RELEASED_MAX_LENGTH if self.interface == "step_tag" else
                          official.README_SCALAR_MAX_LENGTH)
        self.max_length = int(max_length)
        self.step_tag = step_tag
        self.policy_tokenizer = None if policy_tokenizer is None else str(policy_tokenizer)
        self._lazy_policy_tok: Any = None
        if isinstance(model, TaggedScorer):
            self.scorer = model
            self.chat = None
        else:
            ref = str(model)
            if self.interface == "step_tag":
                self.chat = ChatPrompt(ref, system_prompt)
                self.scorer = TaggedScorer(ref, head="token_cls", step_tag=step_tag, step_separator="",
                                           prompt_template=self.chat, positive_label=positive_label,
                                           max_length=self.max_length, batch_size=batch_size, device=device,
                                           add_bos=False, model_kwargs=model_kwargs)
            else:
                # head from the architecture: a one-label sequence classifier (no bias), or the
                # token classifier convert_scalar_checkpoint writes (keeps the released head's bias)
                self.chat = None
                self.scorer = TaggedScorer(ref, head=None, step_tag=step_tag, positive_label=positive_label,
                                           max_length=self.max_length, batch_size=batch_size, device=device,
                                           add_bos=True, model_kwargs=model_kwargs)

    @property
    def last_trajectory_scores(self) -> list[float | None]:
        """The trajectory score (r̂_final) of each row of the last call (``last_call.detail("trajectory_scores")``)."""
        return self.last_call.detail(TRAJECTORY_SCORES)

    # -- layout -------------------------------------------------------------------------------
    def parts(self, text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Spans of the thinking steps and of the response step(s) in ``text``."""
        if self.mode == "official":
            return [], [(0, len(text))]  # the whole completion as it is (the released code strips nothing)
        think, answer = split_thinking(text)
        thinking = [] if think is None else [s.span for s in split_steps(text, self.split, start=think[0],
                                                                           end=think[1])]
        if self.response_as == "steps":
            response = [s.span for s in split_steps(text, self.split, start=answer[0], end=answer[1])]
        else:
            response = [s.span for s in split_steps(text, "re:(?!)", start=answer[0], end=answer[1])]
        if think is None and self.response_as == "one_step":
            # no <think> block: the completion's own steps are the steps, its last step the response
            steps = [s.span for s in split_steps(text, self.split)]
            thinking, response = steps[:-1], steps[-1:]
        return thinking, response

    def _encode_tagged(self, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
        sc = self.scorer
        ids, positions, _ = sc.encode(question, steps)
        ids = ids[:positions[-1] + 1]
        if self.read_at == "last_token":
            suffix = self.chat.suffix() if self.chat is not None else ""
            ids = ids + (list(sc.tokenizer(suffix, add_special_tokens=False)["input_ids"]) if suffix else [])
            positions = positions + [len(ids) - 1]
        return ids, positions

    def _encode_scalar(self, question: str, text: str) -> tuple[list[int], list[int]]:
        tok = self.scorer.tokenizer
        ids = list(tok(question + text, add_special_tokens=True)["input_ids"])
        return ids, [len(ids) - 1]

    def _fit(self, ids: list[int], positions: list[int], n_prompt: int, stats: Counter[str]):
        excess = len(ids) - self.max_length
        if excess <= 0:
            return ids, positions
        if excess > n_prompt:
            stats["too_long"] += 1
            return None
        stats["truncated"] += 1
        return ids[excess:], [p - excess for p in positions]

    # -- scoring ------------------------------------------------------------------------------
    def policy_tok(self):
        """The tokenizer that renders and decodes prompts in official mode (default: the PRM's)."""
        if self.policy_tokenizer is None:
            return self.scorer.tokenizer
        if self._lazy_policy_tok is None:
            from transformers import AutoTokenizer

            self._lazy_policy_tok = AutoTokenizer.from_pretrained(self.policy_tokenizer)
        return self._lazy_policy_tok

    def official_input(self, prompt: Any, completion: str,
                       counts: Counter[str] | None = None) -> tuple[list[int], int, int]:
        """Token ids the released code scores, the position it reads and its separator count
        (a cut at ``max_length`` is counted in ``counts["truncated"]``)."""
        tok = self.scorer.tokenizer
        if self.interface == "scalar":
            ids = official.scalar_input_ids(tok, prompt_text(prompt), completion, self.max_length)
            return ids, len(ids) - 1, 1
        text = official.policy_prompt_text(prompt, self.policy_tok())
        _, ids = official.prm_input(tok, text, completion, max_length=None, step_tag=self.step_tag)
        if len(ids) > self.max_length:
            if counts is not None:
                counts["truncated"] += 1
            ids = ids[:self.max_length]
        sep = official.separator_id(tok, self.step_tag)
        seps = [k for k, t in enumerate(ids) if t == sep]
        pos = len(ids) - 1 if self.read_at == "last_token" or not seps else seps[-1]
        return ids, pos, len(seps)

    def _official_scores(self, batch: Batch) -> tuple[list[StepScores | None], list[float | None]]:
        out: list[StepScores | None] = [None] * len(batch)
        trajectory: list[float | None] = [None] * len(batch)
        rows, seqs, positions, n_seps = [], [], [], []
        for i in range(len(batch)):
            if batch.skip[i]:
                continue
            ids, pos, n_sep = self.official_input(batch.prompts[i], batch.texts[i], batch.counts)
            rows.append(i)
            seqs.append(ids)
            positions.append([pos])
            n_seps.append(n_sep)
        scores = self.scorer.run(seqs, positions) if seqs else []
        for i, sc, n_sep in zip(rows, scores, n_seps):
            if self.interface == "scalar":
                value: float | None = sc[0]  # float32 sigmoid, as the README's RewardModel
            else:
                value = official.first_step_score(official.to_bfloat16(sc[0]), n_sep)
                if value is None:  # the released worker raises here (no separator left, or an underflow)
                    batch.counts["official_error"] += 1
            trajectory[i] = value
            if value is not None:
                out[i] = StepScores([value], [(0, len(batch.texts[i]))])
        return out, trajectory

    def step_scores_batch(self, batch: Batch) -> list[StepScores | None]:
        """Per-step scores of every row; the trajectory scores are shared as ``"trajectory_scores"``
        and the thinking-step counts kept in ``batch.extras`` for :meth:`score_batch`."""
        steps, trajectory, n_thinking = self._scores(batch)
        batch.share(TRAJECTORY_SCORES, trajectory)
        batch.extras["n_thinking"] = n_thinking
        return steps

    def _scores(self, batch: Batch) -> tuple[list[StepScores | None], list[float | None], dict[int, int]]:
        if self.mode == "official":
            return (*self._official_scores(batch), {})
        out: list[StepScores | None] = [None] * len(batch)
        trajectory: list[float | None] = [None] * len(batch)
        seqs, positions, meta = [], [], []
        stats: Counter[str] = Counter()
        tok = self.scorer.tokenizer  # loads the model and tokenizer once
        for i in range(len(batch)):
            if batch.skip[i]:
                continue
            text = batch.texts[i]
            question = prompt_text(batch.prompts[i])
            thinking, response = self.parts(text)
            spans = thinking + response
            if not spans:
                out[i] = StepScores([], [])
                continue
            if self.interface == "scalar":
                ids, pos = self._encode_scalar(question, text)
                n_prompt = len(tok(question, add_special_tokens=True)["input_ids"])
            else:
                steps = [text[a:b] for a, b in spans]
                ids, pos = self._encode_tagged(question, steps)
                n_prompt = len(self.scorer.encode(question, [])[0])
            fitted = self._fit(ids, pos, n_prompt, stats)
            if fitted is None:
                continue
            seqs.append(fitted[0])
            positions.append(fitted[1])
            meta.append((i, thinking, response))
        scores = self.scorer.run(seqs, positions) if seqs else []
        batch.counts.update(stats)
        for (i, thinking, response), sc in zip(meta, scores):
            if self.interface == "scalar":
                # one score for the sequence: it is both the step mean and the trajectory score
                full = thinking + response
                out[i] = StepScores([sc[0]], [(full[0][0], full[-1][1])])
                trajectory[i] = sc[0]
                continue
            tag_scores = sc[:len(thinking) + len(response)]
            traj = sc[-1]  # last separator, or the extra last-token position
            out[i] = StepScores(list(tag_scores), thinking + response)
            trajectory[i] = traj
        return out, trajectory, {i: len(t) for i, t, _ in meta}

    def score_batch(self, batch: Batch) -> list[float | None]:
        steps = self.step_scores_batch(batch)
        batch.share(STEP_SCORES, steps)
        n_think: dict[int, int] = batch.extras["n_thinking"]
        values: list[float | None] = []
        for i, s in enumerate(steps):
            traj = batch.details[TRAJECTORY_SCORES][i]
            if s is None or not s.scores or traj is None:
                values.append(None)
                continue
            if self.interface == "scalar" or self.mode == "official":
                values.append(traj)
                continue
            k = n_think.get(i, 0)
            step_part = s.scores[:k] if k else s.scores  # no thinking: the response is the only step
            values.append(sum(step_part) / len(step_part) + self.alpha * traj)
        return values

    def log_components(self, batch: Batch) -> None:
        for key in ("truncated", "too_long", "official_error"):
            batch.log_metric(f"rewardkit/{self.name}/{key}", float(batch.counts.get(key, 0)))
        traj = [t for t in batch.details.get(TRAJECTORY_SCORES, []) if t is not None]
        if traj:
            batch.log_metric(f"{self.name}/trajectory_score_mean", sum(traj) / len(traj))


ReasonFluxPRM = ReasonFluxPRMReward  # the documented name before the plugin contract (issue 14)


def convert_scalar_checkpoint(causal_lm_dir: str | os.PathLike[str], reward_head: str | os.PathLike[str] | None,
                              out_dir: str | os.PathLike[str]) -> str:
    """Turn the 1.5B release layout into a directory that ``interface="scalar"`` loads.

    The release saves a causal LM with ``save_pretrained`` and, beside it, ``reward_head.pt``: the
    state dict of a ``Linear(hidden, 1)`` (keys ``weight`` of shape (1, hidden) and ``bias`` of
    shape (1,)) applied to the last hidden state at the last token, then a sigmoid. The output is a
    one-label ``*ForTokenClassification`` model: its ``score`` layer is a ``Linear(hidden, 1)`` with a
    bias on the same final hidden states, so weight and bias are copied as they are and the scorer
    reads sigmoid(logit) at the last token. ``reward_head=None`` means ``<causal_lm_dir>/reward_head.pt``.
    """
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    head_path = os.path.join(causal_lm_dir, "reward_head.pt") if reward_head is None else reward_head
    state = torch.load(head_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        state = state.state_dict()
    weights = {k.split(".")[-1]: v for k, v in state.items()}
    unknown = set(weights) - {"weight", "bias"}
    if "weight" not in weights or weights["weight"].ndim != 2 or weights["weight"].shape[0] != 1 or unknown:
        raise ValueError(f"{head_path}: expected the state dict of a Linear(hidden, 1), got "
                         f"{ {k: tuple(v.shape) for k, v in state.items()} }")
    model = AutoModelForTokenClassification.from_pretrained(causal_lm_dir, num_labels=1)
    if model.score.weight.shape != weights["weight"].shape:
        raise ValueError(f"{head_path}: head weight {tuple(weights['weight'].shape)} does not fit hidden size "
                         f"{model.score.weight.shape[1]} of {causal_lm_dir}")
    if model.score.bias is None:
        raise ValueError(f"{type(model).__name__} has a score layer without bias; cannot hold the released head")
    with torch.no_grad():
        model.score.weight.copy_(weights["weight"].to(model.score.weight.dtype))
        bias = weights.get("bias", torch.zeros(1))
        model.score.bias.copy_(bias.reshape(1).to(model.score.bias.dtype))
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(causal_lm_dir).save_pretrained(out_dir)
    return str(out_dir)
