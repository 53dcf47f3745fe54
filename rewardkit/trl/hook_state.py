"""Hook state on disk without pickle: a JSON file plus a tensors-only file read with ``weights_only``.

A checkpoint is something people download and share. ``torch.load(weights_only=False)`` runs
whatever code a crafted file carries, so hook state is written as

* ``rewardkit_hooks.json``: every hook's ``state_dict()`` as JSON, exact on reload (floats keep all
  their digits, tuples stay tuples, dict keys keep their type);
* ``rewardkit_hooks.tensors.pt``: the tensors and numpy arrays it holds, a flat ``{str: Tensor}``
  read with ``torch.load(weights_only=True)``, which refuses to build anything else.

What a state may hold: ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples, dicts
(any keys of these types), ``torch.Tensor``, numpy arrays of numbers and numpy number scalars:
enough for counters, histories, optimizer and scheduler ``state_dict()``s and random states
(``random.getstate()``, ``numpy.random.get_state()``, ``torch.get_rng_state()``). Anything else is
a :class:`HookStateError` naming where it sits, raised when the checkpoint is written.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import OrderedDict
from typing import Any

HOOK_STATE_FILE = "rewardkit_hooks.json"
HOOK_TENSORS_FILE = "rewardkit_hooks.tensors.pt"
LEGACY_HOOK_STATE_FILE = "rewardkit_hooks.pt"  # the older pickle format: read only if weights-only loadable
FORMAT = "rewardkit-hook-state"
VERSION = 1
TAG = "$"  # a JSON object with this key is an encoded value; plain dicts never have it


class HookStateError(ValueError):
    """Hook state that cannot be written or read back safely."""


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}

    def encode(self, value: Any, where: str) -> Any:
        import numpy as np
        import torch

        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value if math.isfinite(value) else {TAG: "float", "value": repr(value)}
        if kind is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if kind is tuple:
            return {TAG: "tuple", "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if kind in (dict, OrderedDict):
            if kind is dict and all(type(k) is str and not k.startswith(TAG) for k in value):
                return {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}
            items = [[self.encode(k, f"{where} key {k!r}"), self.encode(v, f"{where}[{k!r}]")]
                     for k, v in value.items()]
            return {TAG: "ordered_dict" if kind is OrderedDict else "dict", "items": items}
        if isinstance(value, torch.Tensor):
            key = str(len(self.tensors))
            self.tensors[key] = value
            return {TAG: "tensor", "key": key}
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biufc":
                raise HookStateError(f"{where} is a numpy array of dtype {value.dtype}; only numeric arrays "
                                     "can be saved")
            # a native-order C copy (np.ascontiguousarray would turn a 0-d array into 1-d)
            native = value.astype(value.dtype.newbyteorder("="), order="C", copy=True)
            try:
                tensor = torch.from_numpy(native)
            except TypeError as exc:  # e.g. longdouble
                raise HookStateError(f"{where} is a numpy array of dtype {value.dtype}: {exc}") from None
            key = str(len(self.tensors))
            self.tensors[key] = tensor
            return {TAG: "ndarray", "key": key, "dtype": value.dtype.str}
        if isinstance(value, np.generic) and type(value.item()) in (bool, int, float):
            return {TAG: "numpy", "dtype": value.dtype.str, "value": self.encode(value.item(), where)}
        hint = " (save generator.get_state(), a tensor, instead)" if isinstance(value, torch.Generator) else ""
        raise HookStateError(
            f"{where} is a {kind.__module__}.{kind.__qualname__}{hint}; hook state may hold only None, bool, "
            "int, float, str, lists, tuples, dicts, tensors and numeric numpy arrays/scalars")


def _decode(value: Any, tensors: dict[str, Any]) -> Any:
    import numpy as np

    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {k: _decode(v, tensors) for k, v in value.items()}
    if tag == "float":
        return float(value["value"])
    if tag == "tuple":
        return tuple(_decode(v, tensors) for v in value["items"])
    if tag in ("dict", "ordered_dict"):
        pairs = [(_decode(k, tensors), _decode(v, tensors)) for k, v in value["items"]]
        return OrderedDict(pairs) if tag == "ordered_dict" else dict(pairs)
    if tag == "tensor":
        return tensors[value["key"]]
    if tag == "ndarray":
        return tensors[value["key"]].numpy().astype(np.dtype(value["dtype"]), copy=True)
    if tag == "numpy":
        return np.dtype(value["dtype"]).type(_decode(value["value"], tensors))
    raise HookStateError(f"unknown encoded value {tag!r} in hook state (written by a newer rewardkit?)")


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _atomic_write(path: str, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_state(state: Any, json_path: str, tensors_path: str, *, what: str = "state") -> None:
    """Write ``state`` as JSON plus a tensors-only file, each atomically (the JSON last: it marks a
    complete save). Any checkpointed state of the types above goes this way, not through pickle."""
    import torch

    enc = _Encoder()
    body = enc.encode(state, what)
    text = json.dumps({"format": FORMAT, "version": VERSION, "state": body}, allow_nan=False)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    _atomic_write(tensors_path, lambda p: torch.save(enc.tensors, p))
    _atomic_write(json_path, lambda p: _write_text(p, text))


def load_state(json_path: str, tensors_path: str) -> Any:
    """Read what :func:`save_state` wrote; the tensors file is loaded with ``weights_only=True``."""
    with open(json_path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HookStateError(f"{json_path} is not a rewardkit state file")
    if doc.get("version") != VERSION:
        raise HookStateError(f"{json_path} has version {doc.get('version')}; this rewardkit reads {VERSION}")
    tensors = _weights_only_load(tensors_path) if os.path.exists(tensors_path) else {}
    if not isinstance(tensors, dict):
        raise HookStateError(f"{tensors_path} does not hold a dict of tensors")
    try:
        return _decode(doc["state"], tensors)
    except KeyError as exc:
        raise HookStateError(f"{json_path} refers to tensor {exc} missing from {tensors_path}") from None


def save_hook_state(states: dict[str, dict[str, Any]], directory: str) -> None:
    """Write ``{hook name: state_dict}`` into ``directory``."""
    save_state(states, os.path.join(directory, HOOK_STATE_FILE), os.path.join(directory, HOOK_TENSORS_FILE),
               what="hook state_dict()")


def _weights_only_load(path: str) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise HookStateError(
            f"{path} holds objects other than tensors and plain containers; rewardkit will not unpickle it, "
            f"because unpickling a crafted file runs code. ({str(exc).splitlines()[0]})") from None


def read_hook_state(directory: str) -> dict[str, dict[str, Any]] | None:
    """Every hook's saved state in a checkpoint directory; None when it holds none."""
    json_path = os.path.join(directory, HOOK_STATE_FILE)
    if not os.path.exists(json_path):
        legacy = os.path.join(directory, LEGACY_HOOK_STATE_FILE)
        if not os.path.exists(legacy):
            return None
        saved = _weights_only_load(legacy)  # an old checkpoint of plain values still loads
        if not isinstance(saved, dict):
            raise HookStateError(f"{legacy} does not hold a dict of hook states")
        return saved
    return load_state(json_path, os.path.join(directory, HOOK_TENSORS_FILE))
