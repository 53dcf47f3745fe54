"""Text engines for the frozen modules (executor, verifier, generator, judge): pluggable backends.

A :class:`Module` turns chat messages into text: ``module.complete(messages) -> str``. Backends:

* :class:`PythonModule` — any ``fn(messages) -> str`` (rules, lookups, test doubles);
* :class:`HFModule` — a transformers causal LM (path or instance), greedy by default (AgentFlow keeps
  the frozen modules at temperature 0);
* :class:`OpenAIModule` — any OpenAI-compatible ``/v1/chat/completions`` endpoint over HTTP
  (vLLM, SGLang, llama.cpp server, OpenAI), through :mod:`rewardkit.serve.openai_compat`.

Modules load lazily (``_lazy_*`` attributes are dropped on pickling, like rewardkit rewards).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rewardkit.serve.openai_compat import ChatCompletionsError, choice_texts, post_chat_completions

Messages = list[dict[str, str]]


class ModuleError(RuntimeError):
    """A module backend failed (HTTP error, malformed response, ...)."""


class Module:
    """Base class: implement :meth:`complete`."""

    def complete(self, messages: Messages) -> str:
        raise NotImplementedError

    def __call__(self, messages: Messages | str) -> str:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return self.complete(messages)

    def __getstate__(self) -> dict[str, Any]:
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}


class PythonModule(Module):
    """Wrap ``fn(messages) -> str``."""

    def __init__(self, fn: Callable[[Messages], str]) -> None:
        self.fn = fn

    def complete(self, messages: Messages) -> str:
        out = self.fn(messages)
        if not isinstance(out, str):
            raise ModuleError(f"python module returned {type(out).__name__}, expected str")
        return out


class HFModule(Module):
    """A frozen transformers causal LM. ``model`` is a path/id or a loaded ``PreTrainedModel``."""

    def __init__(self, model: Any, tokenizer: Any = None, *, max_new_tokens: int = 128,
                 temperature: float = 0.0, device: str | None = None) -> None:
        self.model = model if isinstance(model, str) else None
        self._lazy_model = None if isinstance(model, str) else model
        self._lazy_tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.device = device
        self._lock = threading.Lock()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_lock", None)
        return state

    def _load(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._lazy_model is None:
            if self.model is None:
                raise ModuleError("HFModule was pickled with an in-memory model; give it a path instead")
            from rewardkit.trl.placement import whole_model_loading

            with whole_model_loading():  # a frozen module is never handed to DeepSpeed
                self._lazy_model = AutoModelForCausalLM.from_pretrained(self.model)
            if self.device is None:  # loaded here: to this process's device (a given model stays put)
                from rewardkit.trl.placement import process_device

                self.device = process_device()
        if self._lazy_tokenizer is None:
            name = self.model or self._lazy_model.config._name_or_path
            self._lazy_tokenizer = AutoTokenizer.from_pretrained(name)
        if self.device is not None:
            self._lazy_model.to(self.device)
        self._lazy_model.eval()
        return self._lazy_model, self._lazy_tokenizer

    def complete(self, messages: Messages) -> str:
        import torch

        with self._lock:
            model, tok = self._load()
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
            kwargs: dict[str, Any] = dict(max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id)
            if self.temperature > 0:
                kwargs.update(do_sample=True, temperature=self.temperature)
            else:
                kwargs.update(do_sample=False)
            with torch.no_grad():
                out = model.generate(**enc, **kwargs)
            return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


class OpenAIModule(Module):
    """An OpenAI-compatible chat endpoint: ``POST {base_url}/chat/completions``.

    Args:
        base_url: e.g. ``http://localhost:8000/v1``.
        model: the served model name.
        api_key: sent as ``Authorization: Bearer``; None sends no header.
        timeout: seconds per request; max_retries: retries on timeouts, connection errors and 5xx.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, temperature: float = 0.0,
                 max_tokens: int = 512, timeout: float = 60.0, max_retries: int = 2,
                 extra_body: dict[str, Any] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.extra_body = dict(extra_body or {})

    def complete(self, messages: Messages) -> str:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, **self.extra_body}
        try:
            reply = post_chat_completions(self.base_url, body, api_key=self.api_key, timeout=self.timeout,
                                          max_retries=self.max_retries)
            texts = choice_texts(reply)
        except ChatCompletionsError as exc:
            raise ModuleError(f"{self.base_url}: {exc}") from exc
        if not texts:
            raise ModuleError(f"{self.base_url}: a chat completion without choices")
        return texts[0]


def as_module(x: Any) -> Module:
    """A Module from a Module, a ``fn(messages) -> str``, or a model path."""
    if isinstance(x, Module):
        return x
    if isinstance(x, str):
        return HFModule(x)
    if callable(x):
        return PythonModule(x)
    raise TypeError(f"cannot make a module out of {x!r}")
