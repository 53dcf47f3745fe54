"""Text generation for stage 0: rewardkit text models with stage 0's calling convention.

``generate(prompts, n=1, temperature=..., top_p=..., max_new_tokens=...)`` returns ``n``
completions per prompt; a prompt is a string or a list of chat messages. The classes are the core
:class:`rewardkit.HFTextModel` / :class:`rewardkit.OpenAITextModel` with stage 0's defaults
(sampling at temperature 0.7, 256 new tokens, seed 0). :func:`serve` exposes any backend (or
function) as an OpenAI-compatible ``/v1/chat/completions`` endpoint on a local port (used for the
loopback tests and the offline pipeline's judge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rewardkit import CallableTextModel, HFTextModel, OpenAITextModel, TextModel, TextModelServer, as_messages

Prompt = str | list[dict[str, Any]]
STAGE0_SAMPLING = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 256}

__all__ = ["OpenAIBackend", "TransformersBackend", "as_messages", "get_backend", "serve"]


class _Stage0Call:
    """``n`` may be positional and the length is ``max_new_tokens`` (``max_tokens`` works too)."""

    def generate(self, prompts: Sequence[Prompt], n: int = 1, *, max_new_tokens: int | None = None,
                 **options: Any) -> list[list[str]]:
        if max_new_tokens is not None:
            options["max_tokens"] = max_new_tokens
        return super().generate(prompts, n=n, **options)  # type: ignore[misc]


class TransformersBackend(_Stage0Call, HFTextModel):
    """Sample from a local causal LM (path or ``PreTrainedModel``) with ``model.generate``."""

    def __init__(self, model: Any, tokenizer: Any = None, *, device: str | None = None, batch_size: int = 16,
                 seed: int | None = 0) -> None:
        super().__init__(model, tokenizer, device=device, batch_size=batch_size, seed=seed, **STAGE0_SAMPLING)


class OpenAIBackend(_Stage0Call, OpenAITextModel):
    """Any OpenAI-compatible ``/chat/completions`` server (vLLM, SGLang, the OpenAI API, ...)."""

    def __init__(self, base_url: str, model: str = "default", *, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 2) -> None:
        super().__init__(base_url, model, api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=0.2,
                         **STAGE0_SAMPLING)


def get_backend(spec: Any, *, model: str = "default", api_key: str | None = None, **kwargs: Any) -> Any:
    """``http(s)://...`` → :class:`OpenAIBackend`; a path or model → :class:`TransformersBackend`;
    an object with ``generate`` is returned as is."""
    if hasattr(spec, "generate") and not isinstance(spec, str):
        return spec
    if isinstance(spec, str) and spec.startswith(("http://", "https://")):
        return OpenAIBackend(spec, model, api_key=api_key)
    return TransformersBackend(spec, **kwargs)


GenerateFn = Callable[[list[dict[str, Any]], int, float, float, int], list[str]]


def serve(backend: Any, host: str = "127.0.0.1", port: int = 0,
          model_name: str = "rewardkit-local") -> tuple[TextModelServer, str]:
    """Serve ``backend`` (a text model, an object with stage 0's ``generate``, or
    ``fn(messages, n, temperature, top_p, max_tokens) -> [str]``) at ``http://host:port/v1``.
    Returns ``(server, base_url)``; stop it with ``server.stop()``."""
    if not isinstance(backend, TextModel):
        if hasattr(backend, "generate"):
            obj = backend

            def fn(messages, n, temperature, top_p, max_tokens):
                return obj.generate([messages], n, temperature=temperature, top_p=top_p, max_new_tokens=max_tokens)[0]
        else:
            fn = backend
        backend = CallableTextModel(
            lambda messages, *, n, temperature, top_p, max_tokens: fn(messages, n, temperature, top_p, max_tokens),
            name=getattr(fn, "__qualname__", "fn"), temperature=1.0, max_tokens=256)
    server = TextModelServer(backend, host=host, port=port, model_name=model_name).start()
    return server, server.base_url
