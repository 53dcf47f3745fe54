"""Text engines for the frozen modules (executor, verifier, generator, judge): rewardkit text models.

A module turns chat messages into text: ``module(messages) -> str`` (or ``module.complete(messages)``).
They are the core :class:`rewardkit.TextModel` classes under Flow-GRPO's names, with AgentFlow's
defaults (the frozen modules decode greedily, at temperature 0):

* :class:`PythonModule` — any ``fn(messages) -> str`` (rules, lookups, test doubles);
* :class:`HFModule` — a transformers causal LM (path or instance), 128 new tokens;
* :class:`OpenAIModule` — any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, SGLang,
  llama.cpp server, OpenAI), 512 tokens.

Any other :class:`rewardkit.TextModel` (e.g. ``rewardkit.text_model("openai:http://host/v1#model")``)
is a module too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewardkit import CallableTextModel, HFTextModel, OpenAITextModel, TextModel, TextModelError

Messages = list[dict[str, str]]
Module = TextModel
ModuleError = TextModelError


class PythonModule(CallableTextModel):
    """Wrap ``fn(messages) -> str`` (a string prompt reaches it as one user message)."""

    def __init__(self, fn: Callable[[Messages], str]) -> None:
        super().__init__(fn, messages=True)


class HFModule(HFTextModel):
    """A frozen transformers causal LM. ``model`` is a path/id or a loaded ``PreTrainedModel``."""

    def __init__(self, model: Any, tokenizer: Any = None, *, max_new_tokens: int = 128,
                 temperature: float = 0.0, device: str | None = None) -> None:
        super().__init__(model, tokenizer, device=device, max_tokens=max_new_tokens, temperature=temperature)


class OpenAIModule(OpenAITextModel):
    """An OpenAI-compatible chat endpoint: ``POST {base_url}/chat/completions`` (see
    :class:`rewardkit.OpenAITextModel` for the arguments)."""

    def __init__(self, base_url: str, model: str, *, temperature: float = 0.0, max_tokens: int = 512,
                 **kwargs: Any) -> None:
        super().__init__(base_url, model, temperature=temperature, max_tokens=max_tokens, **kwargs)


def as_module(x: Any) -> Module:
    """A module from a module, a ``fn(messages) -> str``, or a model path."""
    if isinstance(x, TextModel):
        return x
    if isinstance(x, str):
        return HFModule(x)
    if callable(x):
        return PythonModule(x)
    raise TypeError(f"cannot make a module out of {x!r}")
