"""Images in reward-server requests, for rewards that declare they take them (``image_columns``).

A reward whose ``image_columns`` names columns (``PRMReward`` with a vision scorer: ``image`` and
``images``) gets those columns, and the image parts of chat prompts (``{"type": "image", "image":
...}``), decoded to ``PIL`` images before they reach it. An image arrives as a data URL
(``data:image/png;base64,...``), ``{"base64": "..."}``, or a path; a path is read only under the
server's ``--data-root`` (``{"path": ...}`` or a plain string), exactly like ``Reward.path_columns``.
Anything else, or bytes PIL cannot read, is a 400 naming the row and the column.
"""

from __future__ import annotations

from typing import Any

from rewardkit.serve.errors import BadRequest


def _one(value: Any, *, root: str | None, reward: str, where: str) -> Any:
    from rewardkit.vision import decode_image

    if value is None:
        return None
    if isinstance(value, dict) and set(value) - {"base64", "path"}:
        raise BadRequest(f"reward {reward!r}: {where}: an image object holds 'base64' or 'path', "
                         f"got keys {sorted(value)}")
    is_path = (isinstance(value, str) and not value.startswith("data:")) or (isinstance(value, dict) and "path" in value)
    if not isinstance(value, (str, dict)):
        raise BadRequest(f"reward {reward!r}: {where}: an image is a data URL, {{'base64': ...}} or a path; "
                         f"got {type(value).__name__}")
    if is_path:
        from rewardkit.serve.guard import resolve_under

        path = value["path"] if isinstance(value, dict) else value
        value = resolve_under(root, path, reward=reward, column=where)
    try:
        return decode_image(value, data_root=root if is_path else None)
    except ValueError as exc:
        raise BadRequest(f"reward {reward!r}: {where}: {exc}") from None


def decode_column(values: list[Any], *, root: str | None, reward: str, column: str) -> list[Any]:
    """One image column: a value per row, each an image or (``images``) a list of images."""
    out = []
    for i, v in enumerate(values):
        where = f"column {column!r} row {i}"
        if isinstance(v, list):
            out.append([_one(x, root=root, reward=reward, where=where) for x in v])
        else:
            out.append(_one(v, root=root, reward=reward, where=where))
    return out


def decode_prompt(prompt: Any, *, root: str | None, reward: str, row: int) -> Any:
    """A chat prompt with its image parts decoded (other prompts are returned as they are)."""
    if not isinstance(prompt, list):
        return prompt
    out = []
    for m in prompt:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            parts = []
            for p in content:
                if isinstance(p, dict) and p.get("type") == "image" and p.get("image") is not None:
                    p = {**p, "image": _one(p["image"], root=root, reward=reward, where=f"prompts[{row}]")}
                parts.append(p)
            m = {**m, "content": parts}
        out.append(m)
    return out
