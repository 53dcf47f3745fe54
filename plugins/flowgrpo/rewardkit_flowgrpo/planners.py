"""Planner backends: how the trained planner samples one turn for a batch of prompt ids.

Every backend returns the completion ids it sampled (ending at EOS) and, when it has them, the
per-token log-probs of the sampling distribution:

* :class:`HFPlanner` — transformers ``generate`` on a model (returns sampling log-probs);
* :class:`FunctionPlanner` — a scripted ``fn(prompt_text) -> str`` (warm-up data, tests);
* :class:`TRLPlanner` — the trainer's own generation path through :func:`rewardkit.trl.generate_completions`
  (transformers or vLLM, weights kept in sync by TRL); :func:`hf_planner_for` builds an
  :class:`HFPlanner` on a trainer's model. :class:`~rewardkit_flowgrpo.rollout.FlowRollout` picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Planner(Protocol):
    def generate(self, prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[list[float]] | None]:
        """Sample one completion per prompt: (completion ids ending at EOS, per-token log-probs or None)."""

    def keep_going(self, n_active: int) -> bool:
        """Whether to run another turn (distributed backends agree across ranks here)."""


class HFPlanner:
    """Sample the planner from a transformers model with ``generate``; returns sampling log-probs.

    The log-probs are those of the distribution actually sampled from (after temperature, top-k and
    top-p), read from ``generate``'s processed scores.
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_new_tokens: int = 32, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, do_sample: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.do_sample = do_sample

    def keep_going(self, n_active: int) -> bool:
        return n_active > 0

    def generate(self, prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[list[float]] | None]:
        import torch

        if not prompt_ids:
            return [], []
        tok = self.tokenizer
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompt_ids)
        ids = torch.full((len(prompt_ids), width), tok.pad_token_id, dtype=torch.long)
        att = torch.zeros_like(ids)
        for i, p in enumerate(prompt_ids):
            ids[i, width - len(p):] = torch.tensor(p)
            att[i, width - len(p):] = 1
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tok.eos_token_id])
        kwargs: dict[str, Any] = dict(max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id,
                                      return_dict_in_generate=True, output_scores=True)
        if self.do_sample:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model.generate(input_ids=ids.to(device), attention_mask=att.to(device), **kwargs)
        if was_training:
            self.model.train()
        seqs = out.sequences[:, width:].cpu()
        logps = torch.stack([s.float().log_softmax(-1).cpu() for s in out.scores], dim=1)  # (B, L, V)
        chosen = logps.gather(-1, seqs[:, : logps.shape[1]].unsqueeze(-1)).squeeze(-1)
        completions, logprobs = [], []
        for i in range(len(prompt_ids)):
            row = seqs[i].tolist()
            end = next((j + 1 for j, t in enumerate(row) if t in eos_ids), len(row))
            completions.append(row[:end])
            logprobs.append(chosen[i, :end].tolist())
        return completions, logprobs




class FunctionPlanner:
    """A planner from ``fn(prompt_text) -> str`` (scripted policies, warm-up data, tests).

    The text is tokenised once and EOS appended; those ids are the "sampled" ids. No log-probs.
    """

    def __init__(self, fn: Callable[[str], str], tokenizer: Any) -> None:
        self.fn = fn
        self.tokenizer = tokenizer

    def keep_going(self, n_active: int) -> bool:
        return n_active > 0

    def generate(self, prompt_ids: list[list[int]]) -> tuple[list[list[int]], None]:
        tok = self.tokenizer
        out = []
        for ids in prompt_ids:
            text = self.fn(tok.decode(ids, skip_special_tokens=False))
            out.append(list(tok(text, add_special_tokens=False)["input_ids"]) + [tok.eos_token_id])
        return out, None


class TRLPlanner:
    """Sample planner turns through the trainer's own generation path (transformers or vLLM).

    Under several processes every rank must call generation the same number of times (vLLM server
    gathers prompts across ranks; ZeRO-3 gathers parameters), so ranks agree on whether another turn
    runs, and a rank without active trajectories generates for one dummy prompt it then drops.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def keep_going(self, n_active: int) -> bool:
        acc = self.trainer.accelerator
        if acc.num_processes == 1:
            return n_active > 0
        import torch

        total = acc.reduce(torch.tensor([n_active], device=acc.device), reduction="sum")
        return int(total.item()) > 0

    def generate(self, prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[list[float]] | None]:
        from rewardkit.trl import generate_completions

        dummy = not prompt_ids
        if dummy:
            prompt_ids = [[self.trainer.processing_class.eos_token_id]]
        completion_ids, logprobs = generate_completions(self.trainer, prompt_ids)
        if dummy:
            return [], None
        return completion_ids, logprobs


def hf_planner_for(trainer: Any) -> HFPlanner:
    """An :class:`HFPlanner` on the trainer's (unwrapped) model with its sampling settings."""
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    tok = trainer.processing_class
    return HFPlanner(model, getattr(tok, "tokenizer", tok), max_new_tokens=args.max_completion_length,
                     temperature=args.temperature, top_p=args.top_p, top_k=args.top_k or 0)
