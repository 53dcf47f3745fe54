"""Metro maps for scoring: from a ``metro`` column (dict or JSON text) or a ``json`` path, cached.

ReasonMap ships one JSON file per city (``stations/<country>/<city>.json``: line name -> ordered
stop list, stop names sometimes suffixed " (Transfer Station)" etc.). The official reward re-reads
that file for every completion; here each file is read once per process and compiled into a
:class:`~rewardkit_rewardmap.scoring.Metro` (normalised stop sets per line).
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rewardkit_rewardmap.scoring import Metro, strip_stop_suffix


def read_metro_json(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read a ReasonMap stations JSON file with the official suffixes stripped from stop names."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a metro JSON file holds an object line name -> list of stops")
    out: dict[str, list[str]] = {}
    for line, stops in data.items():
        if not isinstance(stops, list):
            raise ValueError(f"{path}: line {line!r} must map to a list of stop names")
        out[str(line)] = [strip_stop_suffix(str(s)) for s in stops]
    return out


def resolve_metro_path(path: str, stations_root: str | os.PathLike[str] | None = None) -> Path:
    """Find a ``json`` column path: as given, else under ``stations_root`` (with or without its
    leading ``./stations/``, which is how the released rows spell it)."""
    p = Path(path)
    if p.is_absolute() or stations_root is None:
        candidates = [p]
    else:
        root = Path(stations_root)
        parts = p.parts
        candidates = [root / p]
        if parts and parts[0] == "stations":
            candidates.append(root / Path(*parts[1:]))
        candidates.append(p)
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"metro JSON {path!r} not found (tried {tried}). The released ReasonMap rows point at "
        "stations/<country>/<city>.json from fscdc/ReasonMap: copy that folder and pass stations_root=...")


class MetroCache:
    """A small thread-safe LRU of compiled metro maps keyed by path or by the JSON text."""

    def __init__(self, maxsize: int = 512, stations_root: str | os.PathLike[str] | None = None) -> None:
        self.maxsize = maxsize
        self.stations_root = stations_root
        self._items: OrderedDict[Any, Metro] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a file or text was actually parsed

    def _get(self, key: Any, build) -> Metro:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        metro = build()
        with self._lock:
            self.loads += 1
            self._items[key] = metro
            if len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return metro

    def from_path(self, path: str | os.PathLike[str]) -> Metro:
        key = ("path", os.fspath(path))
        return self._get(key, lambda: Metro.from_mapping(read_metro_json(resolve_metro_path(os.fspath(path),
                                                                                            self.stations_root))))

    def from_value(self, value: Any) -> Metro:
        """A ``metro`` column value: JSON text or a mapping line -> stops."""
        if isinstance(value, Metro):
            return value
        if isinstance(value, str):
            return self._get(("text", value), lambda: Metro.from_mapping(_parse_text(value)))
        if isinstance(value, Mapping):
            # rows of a datasets table are fresh dicts: key them by content
            key = ("dict", json.dumps(value, sort_keys=True, ensure_ascii=False, default=list))
            return self._get(key, lambda: Metro.from_mapping(value))
        raise TypeError(f"the metro column holds a mapping or JSON text, got {type(value).__name__}")


def _parse_text(text: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the metro column is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("the metro column's JSON must be an object line name -> list of stops")
    return {k: (None if v is None else [strip_stop_suffix(str(s)) for s in v]) for k, v in data.items()}
