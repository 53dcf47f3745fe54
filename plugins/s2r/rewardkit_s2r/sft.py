"""Stage 1: supervised behaviour initialisation with S²R's action mask (paper Eq. 1).

The loss covers every verification, the last (correct) attempt with the ``Let me try again.``
that opens it, and the EOS; earlier (wrong) attempts and their retry markers stay in the context
but get label ``-100``. A single-round trajectory trains on everything. For
``r = (s1, v1, s2, v2, s3, v3)`` the mask is ``(0, 1, 0, 1, 1, 1)``.

:class:`S2RSFTCollator` plugs into TRL's ``SFTTrainer`` (``data_collator=``): SFTTrainer tokenizes
the prompt/completion pairs and sets prompt labels to -100; the collator decodes each completion,
parses it, and masks the tokens of the earlier attempts, then pads like TRL's own collator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardkit import token_char_ends
from rewardkit_s2r.advantages import action_token_bounds
from rewardkit_s2r.parse import SYSTEM_PROMPT, Markers, get_markers, parse


def s2r_token_mask(completion_ids: Sequence[int], tokenizer: Any,
                   markers: Markers | dict[str, Any] | None = None, text: str | None = None) -> list[int]:
    """1 for completion tokens that carry loss under S²R's SFT mask, 0 for earlier attempts."""
    mk = get_markers(markers)
    ids = list(completion_ids)
    if text is None:
        text = tokenizer.decode(ids, skip_special_tokens=True)
    traj = parse(text, mk)
    if traj.num_rounds <= 1:
        return [1] * len(ids)
    char_ends = token_char_ends(ids, tokenizer, text)
    bounds = action_token_bounds([a.span for a in traj.actions], char_ends, len(ids))
    last_solve = max(k for k, a in enumerate(traj.actions) if a.kind == "solve")
    mask = [1] * len(ids)
    for k, (a, (lo, hi)) in enumerate(zip(traj.actions, bounds)):
        if a.kind == "solve" and k != last_solve:
            for t in range(lo, hi):
                mask[t] = 0
    return mask


class S2RSFTCollator:
    """A data collator for TRL's ``SFTTrainer`` that applies S²R's stage-1 mask.

    Each example needs ``input_ids`` and either ``labels`` (SFTTrainer's prepared datasets: prompt
    tokens are -100) or ``completion_mask``; the completion is the tokens from the first labelled
    position on. Output: padded ``input_ids``, ``attention_mask`` and ``labels``.
    """

    def __init__(self, tokenizer: Any, markers: Markers | dict[str, Any] | None = None, *,
                 pad_token_id: int | None = None, pad_to_multiple_of: int | None = None) -> None:
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.tokenizer = tokenizer
        self.markers = get_markers(markers)
        pad = pad_token_id if pad_token_id is not None else tokenizer.pad_token_id
        if pad is None:
            raise ValueError("the tokenizer has no pad token; pass pad_token_id=")
        self._pad = DataCollatorForLanguageModeling(pad_token_id=pad, pad_to_multiple_of=pad_to_multiple_of)
        self.masked_tokens = 0
        self.loss_tokens = 0

    def example_labels(self, example: dict[str, Any]) -> list[int]:
        ids = list(example["input_ids"])
        if "labels" in example:
            labels = list(example["labels"])
        elif "completion_mask" in example:
            labels = [t if m else -100 for t, m in zip(ids, example["completion_mask"])]
        else:
            raise KeyError("S2RSFTCollator needs 'labels' or 'completion_mask' to find the completion "
                           "(use a prompt/completion dataset with SFTTrainer)")
        start = next((i for i, lab in enumerate(labels) if lab != -100), len(ids))
        if start == len(ids):
            return labels
        mask = s2r_token_mask(ids[start:], self.tokenizer, self.markers)
        for j, m in enumerate(mask):
            if not m:
                labels[start + j] = -100
        self.masked_tokens += mask.count(0)
        self.loss_tokens += sum(1 for lab in labels if lab != -100)
        return labels

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        prepared = [{"input_ids": list(ex["input_ids"]), "labels": self.example_labels(ex)} for ex in examples]
        return self._pad(prepared)


def sft_records(trajectories: Sequence[dict[str, Any]], *, system_prompt: str | None = SYSTEM_PROMPT,
                question_key: str = "question", text_key: str = "text") -> list[dict[str, Any]]:
    """Conversational prompt/completion rows for SFTTrainer from stage-0 records."""
    rows = []
    for r in trajectories:
        prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": r[question_key]}]
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": r[text_key]}]})
    return rows
