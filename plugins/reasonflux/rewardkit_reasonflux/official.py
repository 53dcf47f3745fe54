"""The released ReasonFlux-PRM code path, as pure functions (``reasonflux.prm`` ``mode="official"``).

Facts reproduced (Gen-Verse/ReasonFlux, ``ReasonFlux_PRM/``; the conformance tables under
``plugins/reasonflux/tests/conformance/`` pin them):

* The GRPO reward worker (``Application/verl/workers/fsdp_workers.py``) decodes the policy's prompt
  and response tokens with special tokens skipped, puts the decoded prompt, as it is, in the user
  turn of the PRM's chat template (no system turn) and the decoded response, not stripped, followed
  by one ``<extra_0>`` in the assistant turn. The whole rendered text is tokenized in one call
  without special tokens and cut from the right at ``max_length``.
* It reads the logits of the last token, softmaxes them in the PRM's dtype (bfloat16: the worker
  loads the PRM in bfloat16) and takes element ``[0][0]`` of ``make_step_rewards``, which keeps the
  non-zero probabilities at every separator. That is P(positive) when both probabilities are
  non-zero; an underflowed probability shifts the pairs (see :func:`first_step_score`).
* reward = float32(0.75 * PRM + 0.25 * rule).
* The 1.5B README scores ``problem + completion`` as raw text, truncated from the right at 2048
  tokens, as sigmoid(Linear(hidden, 1) with bias) at the last token.
"""

from __future__ import annotations

from typing import Any

STEP_TAG = "<extra_0>"
RELEASED_BETA = 0.75
# the worker's max_length defaults to the policy batch width: max prompt + max response of the
# released GRPO scripts (512 + 16384)
RELEASED_MAX_LENGTH = 512 + 16384
README_SCALAR_MAX_LENGTH = 2048


def policy_prompt_text(prompt: Any, policy_tokenizer: Any) -> str:
    """The prompt as the worker sees it: the policy's prompt tokens decoded with special tokens skipped.

    Chat prompts are first rendered with the policy's chat template and a generation prompt (as verl
    and TRL do before generating), so role names and the system turn stay in the text while the
    template's special tokens (``<|im_start|>`` ...) disappear.
    """
    if isinstance(prompt, list):
        text = policy_tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    elif isinstance(prompt, str):
        text = prompt
    else:
        raise TypeError(f"prompt of type {type(prompt).__name__} is neither text nor a list of messages")
    ids = policy_tokenizer(text, add_special_tokens=False)["input_ids"]
    return policy_tokenizer.decode(ids, skip_special_tokens=True)


def prm_messages(prompt_text: str, response: str, step_tag: str = STEP_TAG) -> list[dict[str, str]]:
    """User turn = the decoded prompt; assistant turn = the whole response as one step plus its tag."""
    return [{"role": "user", "content": prompt_text}, {"role": "assistant", "content": response + step_tag}]


def prm_input(prm_tokenizer: Any, prompt_text: str, response: str, *,
              max_length: int | None = RELEASED_MAX_LENGTH, step_tag: str = STEP_TAG) -> tuple[str, list[int]]:
    """The rendered chat text and its token ids, cut from the right at ``max_length`` (None: uncut)."""
    text = prm_tokenizer.apply_chat_template(prm_messages(prompt_text, response, step_tag), tokenize=False,
                                             add_generation_prompt=False)
    ids = list(prm_tokenizer(text, add_special_tokens=False)["input_ids"])
    return text, ids if max_length is None else ids[:max_length]


def separator_id(prm_tokenizer: Any, step_tag: str = STEP_TAG) -> int:
    """The id the worker counts as a separator: the first id of ``encode(step_tag)`` (special tokens on)."""
    return int(prm_tokenizer.encode(step_tag)[0])


def to_bfloat16(x: float) -> float:
    """``x`` rounded to bfloat16 (the dtype of the worker's logits and of their softmax)."""
    import torch

    return float(torch.tensor(float(x), dtype=torch.float32).to(torch.bfloat16).item())


def first_step_score(p_pos: float, n_separators: int, p_neg: float | None = None) -> float | None:
    """``make_step_rewards(...)[0][0]`` for one row, from the probabilities at its last token.

    The released helper multiplies the last token's two probabilities into every separator position,
    keeps the non-zero entries, views them as pairs and takes the second of each pair. So:

    * both probabilities non-zero: ``p_pos`` (one pair per separator);
    * ``p_pos == 0`` (underflow): only the ``p_neg`` entries survive; with an even number of
      separators the "second of the pair" is ``p_neg`` (≈ 1.0: the worst response gets the best
      score), with an odd number the view fails;
    * ``p_neg == 0``: with an even number of separators ``p_pos``, with an odd number the view fails;
    * no separator (cut off by ``max_length``): the list is empty and ``[0][0]`` fails.

    Returns None where the released code raises. ``p_neg=None`` (the reward sees only P(positive)):
    1.0 when ``p_pos`` underflowed (exact: the rest of the mass rounds to 1), else assumed non-zero.
    """
    if n_separators <= 0:
        return None
    pos_zero = p_pos == 0.0
    if p_neg is None and pos_zero:
        p_neg = 1.0
    neg_zero = p_neg is not None and p_neg == 0.0
    if not pos_zero and not neg_zero:
        return float(p_pos)
    if pos_zero and neg_zero:  # softmax never gives two zeros; only NaN-free inputs reach here
        return None
    if n_separators % 2:
        return None
    return float(p_neg) if pos_zero else float(p_pos)  # type: ignore[arg-type]


def released_mix(prm_score: float, rule_score: float, beta: float = RELEASED_BETA) -> float:
    """The worker's reward: ``beta * prm + (1 - beta) * rule`` in double, stored as float32."""
    import numpy as np

    return float(np.float32(beta * float(prm_score) + (1 - beta) * float(rule_score)))


def scalar_input_ids(tokenizer: Any, problem: str, completion: str,
                     max_length: int = README_SCALAR_MAX_LENGTH) -> list[int]:
    """The 1.5B README's input: ``problem + completion`` with the tokenizer's special tokens, truncated
    (from the right, by the tokenizer) to ``max_length``."""
    return list(tokenizer(problem + completion, truncation=True, max_length=max_length)["input_ids"])


def last_boxed(text: str) -> str | None:
    """The last ``\\boxed{...}`` of ``text`` with balanced braces, or None (no ``\\boxed{`` or unclosed)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    for k in range(start, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[start:k + 1]
    return None


def strict_box_score(solution: str, ground_truth: str) -> float:
    """The released rule reward (``math_dapo.compute_score`` with its default strict box check):
    1.0 when the content of the last balanced ``\\boxed{...}`` found in the **last 100 characters** of
    the decoded response equals ``ground_truth`` exactly (no normalisation, no stripping), else 0.0."""
    boxed = last_boxed(solution[-100:])
    return 1.0 if boxed is not None and boxed[len("\\boxed{"):-1] == ground_truth else 0.0
