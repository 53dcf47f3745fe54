"""RewardSetModel: a composed RewardSet behind a sequence-classification interface.

Some trainers and libraries take only a reward *model*: ``model(input_ids, attention_mask)`` whose
output has ``.logits`` of shape ``(B, 1)``. :class:`RewardSetModel` is such a model. It decodes each
row's tokens with the tokenizer, splits the text into prompt and completion, runs every reward of
the set and returns the weighted sum as the logit.

In TRL (``GRPOTrainer`` / ``RLOOTrainer``) pass it in ``reward_funcs`` with its tokenizer in
``reward_processing_classes``; TRL tokenizes ``prompt + completion`` (chat prompts through the chat
template) with right padding and reads ``.logits[:, 0]``; the metric name is ``config._name_or_path``.
Passing the ``RewardSet``'s own ``funcs`` is better where it is possible (TRL then logs each reward
and passes dataset columns); this adapter is for code that takes nothing but a model.

Prompt / completion split (``split=``):

``"auto"``  the longest known prompt (``rows``) that prefixes the text, else, with a chat
            template, everything up to the last assistant header; else the whole text is the
            completion and the prompt is empty;
``"rows"``  only the known prompts (a text matching none is an error);
callable    ``split(text) -> (prompt, completion)``.

``rows`` are dataset rows (dicts with the prompt column); a matched row's other columns reach the
rewards (``solution`` for ``math.accuracy``, ...). Chat prompts are rendered with the chat template
to be matched, and the template's end-of-turn suffix is taken off the completion.

Rows where every reward returns ``None`` get a NaN logit, which TRL treats as "no reward from this
function" for the row; it is never a 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rewardkit.compose import RewardSet, compose
from rewardkit.reward import Reward, completion_text

SplitFn = Callable[[str], tuple[Any, str]]


def _reward_set(rewards: RewardSet | Mapping[str, Any] | Sequence[Reward], weights: Sequence[float] | None) -> RewardSet:
    if isinstance(rewards, RewardSet):
        if weights is not None:
            return RewardSet(rewards.rewards, list(weights), rewards.spec)
        return rewards
    if isinstance(rewards, Mapping):
        if weights is not None:
            raise ValueError("weights come from the spec; do not pass weights= with a spec mapping")
        return compose(rewards)
    rewards = list(rewards)
    return RewardSet(rewards, list(weights) if weights is not None else [1.0] * len(rewards))


class RewardSetModel(nn.Module):
    """An ``nn.Module`` with a sequence-classification interface over a composed RewardSet.

    Args:
        rewards: a :class:`~rewardkit.RewardSet`, a compose spec, or a list of rewards.
        tokenizer: the tokenizer that produced ``input_ids`` (decodes them back to text).
        weights: weights for a list of rewards (a RewardSet or spec brings its own).
        rows: dataset rows (dicts holding ``prompt_column``) to split texts and supply columns.
        split: ``"auto"``, ``"rows"`` or a callable (see the module docstring).
        prompt_column: the prompt column of ``rows``.
        name: ``config._name_or_path``, the name TRL logs the reward under.
    """

    def __init__(self, rewards: RewardSet | Mapping[str, Any] | Sequence[Reward], tokenizer: Any, *,
                 weights: Sequence[float] | None = None, rows: Sequence[Mapping[str, Any]] | None = None,
                 split: str | SplitFn = "auto", prompt_column: str = "prompt", name: str = "rewardset") -> None:
        super().__init__()
        from transformers import PretrainedConfig

        self.reward_set = _reward_set(rewards, weights)
        self.tokenizer = tokenizer
        if not (callable(split) or split in ("auto", "rows")):
            raise ValueError(f"split must be 'auto', 'rows' or a callable, got {split!r}")
        if split == "rows" and not rows:
            raise ValueError("split='rows' needs rows= (dataset rows with the prompt column)")
        self.split = split
        self.prompt_column = prompt_column
        self.config = PretrainedConfig()
        self.config._name_or_path = name
        # a buffer so .to(device) / .device behave like a model's; no parameters (nothing to train,
        # so DeepSpeed/FSDP never wrap it)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        self._eot = self._end_of_turn()
        self._header = self._assistant_header()
        self._rows: dict[str, Mapping[str, Any]] = {}
        for row in rows or []:
            self._rows.setdefault(self._render_prompt(row[prompt_column]), row)
        self._prompts_longest_first = sorted(self._rows, key=len, reverse=True)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    # -- text handling -------------------------------------------------------------------------
    def _has_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _render_prompt(self, prompt: Any) -> str:
        if isinstance(prompt, str):
            return prompt
        if not self._has_template():
            raise ValueError("chat prompts need a tokenizer with a chat template")
        return self.tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)

    def _assistant_header(self) -> str | None:
        if not self._has_template():
            return None
        msgs = [{"role": "user", "content": "\x00"}]
        with_gen = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        without = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
        return with_gen[len(without):] if with_gen.startswith(without) and len(with_gen) > len(without) else None

    def _end_of_turn(self) -> str:
        if not self._has_template():
            return ""
        marker = "\x01"
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": "u"},
                                                   {"role": "assistant", "content": marker}], tokenize=False)
        return text[text.rindex(marker) + 1:] if marker in text else ""

    def _strip_eot(self, completion: str) -> str:
        if self._eot and completion.endswith(self._eot):
            return completion[: -len(self._eot)]
        if self._eot.strip() and completion.rstrip().endswith(self._eot.strip()):
            return completion.rstrip()[: -len(self._eot.strip())]
        return completion

    def split_text(self, text: str) -> tuple[Any, str, Mapping[str, Any] | None]:
        """``(prompt, completion, row)`` of one decoded text (``row`` is None when no row matched)."""
        if callable(self.split):
            prompt, completion = self.split(text)
            return prompt, completion, None
        for p in self._prompts_longest_first:
            if text.startswith(p):
                row = self._rows[p]
                return row[self.prompt_column], self._strip_eot(text[len(p):]), row
        if self.split == "rows":
            raise ValueError(f"no known prompt starts this text: {text[:120]!r}")
        if self._header and self._header in text:
            cut = text.rindex(self._header) + len(self._header)
            return text[:cut], self._strip_eot(text[cut:]), None
        return "", text, None

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[str]:
        """The text of each row (padding dropped wherever it is, special tokens kept)."""
        texts = []
        for i in range(input_ids.shape[0]):
            ids = input_ids[i]
            if attention_mask is not None:
                ids = ids[attention_mask[i].bool()]
            texts.append(self.tokenizer.decode(ids.tolist(), skip_special_tokens=False))
        return texts

    # -- scoring -------------------------------------------------------------------------------
    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Weighted sum of the set's rewards for each decoded text (NaN where none applies)."""
        parts = [self.split_text(t) for t in texts]
        prompts = [p for p, _, _ in parts]
        completions = [c for _, c, _ in parts]
        columns: dict[str, list[Any]] = {}
        matched = [row for _, _, row in parts if row is not None]
        if matched and len(matched) == len(parts):
            keys = set.intersection(*(set(r) for r in matched)) - {self.prompt_column, "completion"}
            columns = {k: [row[k] for _, _, row in parts] for k in sorted(keys)}
        ids = [self.tokenizer(completion_text(c), add_special_tokens=False)["input_ids"] for c in completions]
        scores = self.reward_set.score(prompts, completions, ids, **columns)
        out = []
        for v in scores["total"]:
            out.append(math.nan if v is None else float(v))
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any):
        from transformers.modeling_outputs import SequenceClassifierOutput

        values = self.score_texts(self.decode(input_ids, attention_mask))
        logits = torch.tensor(values, dtype=torch.float32, device=input_ids.device).unsqueeze(-1)
        return SequenceClassifierOutput(logits=logits)

    def extra_repr(self) -> str:
        return f"rewards={self.reward_set.names}, weights={self.reward_set.weights}"
