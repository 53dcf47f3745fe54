"""Text generation backends for stage 0: a local transformers model or an OpenAI-compatible server.

Both implement ``generate(prompts, n=1, temperature=..., top_p=..., max_new_tokens=...)`` and
return ``n`` completions per prompt. A prompt is a string or a list of chat messages.
:func:`serve` exposes any backend (or function) as an OpenAI-compatible ``/v1/chat/completions``
endpoint on a local port (used for the loopback tests and the offline pipeline's judge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rewardkit.serve.openai_compat import (
    ChatCompletionsError,
    ChatCompletionsServer,
    choice_texts,
    post_chat_completions,
)

Prompt = str | list[dict[str, Any]]


def as_messages(prompt: Prompt) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class TransformersBackend:
    """Sample from a local causal LM (path or ``PreTrainedModel``) with ``model.generate``."""

    def __init__(self, model: Any, tokenizer: Any = None, *, device: str | None = None, batch_size: int = 16,
                 seed: int | None = 0) -> None:
        self.model_ref = model
        self.tokenizer_ref = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        self._lazy_model: Any = None
        self._lazy_tok: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._lazy_model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = self.model_ref
            if isinstance(model, str) or hasattr(model, "__fspath__"):
                from rewardkit.trl.placement import whole_model_loading

                with whole_model_loading():
                    model = AutoModelForCausalLM.from_pretrained(str(model))
            tok = self.tokenizer_ref or AutoTokenizer.from_pretrained(str(self.model_ref))
            tok.padding_side = "left"
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            if self.device is None:
                from rewardkit.trl.placement import process_device

                self.device = process_device()
            self._lazy_model = model.to(self.device).eval()
            self._lazy_tok = tok
        return self._lazy_model, self._lazy_tok

    def _encode(self, tok: Any, prompt: Prompt) -> str:
        if isinstance(prompt, str) and not getattr(tok, "chat_template", None):
            return prompt
        return tok.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: Sequence[Prompt], n: int = 1, *, temperature: float = 0.7, top_p: float = 1.0,
                 max_new_tokens: int = 256) -> list[list[str]]:
        import torch

        model, tok = self._load()
        if self.seed is not None:
            torch.manual_seed(self.seed)
        out: list[list[str]] = []
        eos = model.generation_config.eos_token_id
        for start in range(0, len(prompts), self.batch_size):
            chunk = [self._encode(tok, p) for p in prompts[start:start + self.batch_size]]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_return_sequences=n,
                                          pad_token_id=tok.pad_token_id, eos_token_id=eos)
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
            else:
                kwargs.update(do_sample=False)
            with torch.no_grad():
                gen = model.generate(**enc, **kwargs)
            new = gen[:, enc["input_ids"].shape[1]:]
            texts = tok.batch_decode(new, skip_special_tokens=True)
            for i in range(len(chunk)):
                out.append(texts[i * n:(i + 1) * n])
        return out


class OpenAIBackend:
    """Any OpenAI-compatible ``/chat/completions`` server (vLLM, SGLang, the OpenAI API, ...)."""

    def __init__(self, base_url: str, model: str = "default", *, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 2) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        return post_chat_completions(self.base_url, payload, api_key=self.api_key, timeout=self.timeout,
                                     max_retries=self.max_retries, backoff=0.2)

    def generate(self, prompts: Sequence[Prompt], n: int = 1, *, temperature: float = 0.7, top_p: float = 1.0,
                 max_new_tokens: int = 256) -> list[list[str]]:
        out = []
        for p in prompts:
            texts: list[str] = []
            while len(texts) < n:  # servers may ignore n: ask again for the rest
                got = choice_texts(self._post({"model": self.model, "messages": as_messages(p), "n": n - len(texts),
                                               "temperature": temperature, "top_p": top_p,
                                               "max_tokens": max_new_tokens}))
                if not got:
                    raise ChatCompletionsError(f"{self.base_url}: a reply without choices")
                texts.extend(got)
            out.append(texts[:n])
        return out


def get_backend(spec: Any, *, model: str = "default", api_key: str | None = None, **kwargs: Any) -> Any:
    """``http(s)://...`` → :class:`OpenAIBackend`; a path or model → :class:`TransformersBackend`;
    an object with ``generate`` is returned as is."""
    if hasattr(spec, "generate") and not isinstance(spec, str):
        return spec
    if isinstance(spec, str) and spec.startswith(("http://", "https://")):
        return OpenAIBackend(spec, model, api_key=api_key)
    return TransformersBackend(spec, **kwargs)


# -- serving a backend over loopback -----------------------------------------------------------

GenerateFn = Callable[[list[dict[str, Any]], int, float, float, int], list[str]]


def serve(backend: Any, host: str = "127.0.0.1", port: int = 0,
          model_name: str = "rewardkit-local") -> tuple[ChatCompletionsServer, str]:
    """Serve ``backend`` (a backend or ``fn(messages, n, temperature, top_p, max_tokens) -> [str]``)
    at ``http://host:port/v1``. Returns ``(server, base_url)``; stop it with ``server.stop()``."""
    if hasattr(backend, "generate"):
        def fn(messages, n, temperature, top_p, max_tokens):
            return backend.generate([messages], n, temperature=temperature, top_p=top_p,
                                    max_new_tokens=max_tokens)[0]
    else:
        fn = backend

    def generate(messages: list[dict[str, Any]], request: dict[str, Any]) -> list[str]:
        return fn(messages, int(request.get("n", 1)), float(request.get("temperature", 1.0)),
                  float(request.get("top_p", 1.0)), int(request.get("max_tokens") or 256))

    server = ChatCompletionsServer(generate, host=host, port=port, model_name=model_name).start()
    return server, server.base_url
