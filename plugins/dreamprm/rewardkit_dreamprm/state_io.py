"""Checkpoint state as JSON plus a tensors-only file, never an arbitrary pickle.

:func:`save_state` writes the nested state (dicts, lists, tuples, numbers, strings, tensors) as
``<stem>.json`` with every tensor replaced by a reference, and the tensors as ``<stem>.pt`` (a flat
``{name: tensor}`` dict). :func:`load_state` reads the tensors with ``torch.load(weights_only=True)``,
whose unpickler refuses any class or function reference, so a tampered checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"
_MAGIC = {_TENSOR, _TUPLE, _ITEMS}


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu()
        return {_TENSOR: name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not (_MAGIC & set(obj)):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {_ITEMS: [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a DreamPRM checkpoint (tensors, numbers, text, "
                    "lists, tuples and dicts only)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(_decode(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_ITEMS}:
            return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in obj[_ITEMS]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def _hashable(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def save_state(stem: str, state: Any) -> tuple[str, str]:
    """Write ``state`` to ``stem + ".json"`` and ``stem + ".pt"``; returns both paths."""
    tensors: dict[str, torch.Tensor] = {}
    doc = _encode(state, tensors)
    json_path, pt_path = stem + ".json", stem + ".pt"
    torch.save(tensors, pt_path)
    with open(json_path, "w") as fh:
        json.dump(doc, fh)
    return json_path, pt_path


def load_state(stem: str) -> Any:
    """Read what :func:`save_state` wrote; the tensor file is loaded with ``weights_only=True``."""
    json_path, pt_path = stem + ".json", stem + ".pt"
    if not os.path.exists(json_path):
        raise FileNotFoundError(f"no DreamPRM state at {json_path}")
    tensors = torch.load(pt_path, map_location="cpu", weights_only=True) if os.path.exists(pt_path) else {}
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ValueError(f"{pt_path} is not a dict of tensors")
    with open(json_path) as fh:
        return _decode(json.load(fh), tensors)
