"""Vision-language models: loading their processor, and images in prompts.

A VLM prompt is a chat whose messages may carry images (``{"type": "image", "image": <PIL.Image>}``
content parts, or a row's ``image``/``images`` column that TRL's GRPOTrainer inserts before the first
user message). Scorers and rewards that take images use the helpers here, so the same rules hold
everywhere: an image is a ``PIL.Image``, bytes, a path, or base64 that says it is base64 (a data URL
or ``{"base64": ...}``), and one that cannot be read is an error.

transformers 5.x builds every sub-processor named in a processor's ``__init__``, and Qwen2-VL-family
processors name a video processor that needs torchvision (huggingface/transformers#48558): without
torchvision ``AutoProcessor.from_pretrained`` raises even for image-only use. ``load_processor``
falls back to the same processor minus its video part, so images work with the PIL image backend.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "IMAGE_COLUMNS",
    "VISION_TOWER_NAMES",
    "VisionTowerProbe",
    "decode_image",
    "encode_image",
    "is_vlm_processor",
    "load_processor",
    "messages_images",
    "multimodal_messages",
    "row_images",
    "save_processor",
    "tokenizer_of",
    "vision_tower",
    "without_video",
]

IMAGE_COLUMNS = ("image", "images")


def without_video(processor_cls: type) -> type:
    """``processor_cls`` without its video processor: ``ProcessorMixin`` reads the sub-processors
    from ``__init__``'s signature, so a signature without ``video_processor`` drops it."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        processor_cls.__init__(self, image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                               chat_template=chat_template, **kwargs)

    # The class name stays the parent's, so save_pretrained writes a processor_class that
    # AutoProcessor (with torchvision installed) resolves to the full processor.
    return type(processor_cls.__name__, (processor_cls,), {"__init__": __init__, "__module__": __name__,
                                                            "__qualname__": processor_cls.__name__,
                                                            "without_video": True})


def load_processor(name_or_path: str | Path, **kwargs: Any):
    """``AutoProcessor.from_pretrained``, falling back to an image-only processor when the video
    processor cannot be built (no torchvision). Text-only models get their tokenizer back."""
    import transformers
    from transformers import AutoConfig, AutoProcessor

    try:
        return AutoProcessor.from_pretrained(name_or_path, **kwargs)
    except (ImportError, OSError) as err:
        # no torchvision, or (with torchvision) a directory saved without video processor settings
        if "torchvision" not in str(err).lower() and "video processor" not in str(err).lower():
            raise
        cause = err
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=kwargs.get("trust_remote_code", False))
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    cls_name = PROCESSOR_MAPPING_NAMES.get(config.model_type)
    processor_cls = getattr(transformers, cls_name, None) if cls_name else None
    if processor_cls is None or "video_processor" not in processor_cls.get_attributes():
        raise cause
    return without_video(processor_cls).from_pretrained(name_or_path, **kwargs)


def save_processor(processor: Any, path: str | Path) -> None:
    """``processor.save_pretrained(path)``, plus video processor settings (the image processor's)
    when an image-only processor has none, so ``AutoProcessor`` with torchvision reads it back."""
    import json

    processor.save_pretrained(path)
    cfg_file = Path(path) / "processor_config.json"
    if not cfg_file.is_file():
        return
    cfg = json.loads(cfg_file.read_text())
    image_cfg = cfg.get("image_processor")
    if "video_processor" in cfg or not isinstance(image_cfg, dict) or not getattr(processor, "without_video", False):
        return
    video_type = str(image_cfg.get("image_processor_type", "")).replace("ImageProcessor", "VideoProcessor")
    keys = ("size", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")
    cfg["video_processor"] = {"video_processor_type": video_type, **{k: image_cfg[k] for k in keys if k in image_cfg}}
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def is_vlm_processor(processing_class: Any) -> bool:
    """True for a processor that takes images (what TRL treats as a vision-language model)."""
    from transformers import ProcessorMixin

    return isinstance(processing_class, ProcessorMixin) and getattr(processing_class, "image_processor", None) \
        is not None


def tokenizer_of(processing_class: Any):
    """The text tokenizer inside a processor, or the tokenizer itself."""
    return getattr(processing_class, "tokenizer", None) or processing_class


def decode_image(value: Any, *, data_root: str | Path | None = None):
    """A ``PIL.Image`` (RGB) from a ``PIL.Image``, raw bytes, ``{"bytes": ...}``/``{"path": ...}``
    (the ``datasets`` Image encoding), ``{"base64": ...}``, a ``data:image/...;base64,`` URL, or a path
    (any other string is taken as a path: base64 text must say it is base64).

    Paths are read only under ``data_root`` when it is given (``rewardkit serve`` passes its
    ``--data-root``); relative paths are resolved against it. Anything unreadable raises ``ValueError``.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return value.convert("RGB") if value.mode != "RGB" else value
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return decode_image(bytes(value["bytes"]))
        if value.get("base64") is not None:
            return decode_image(_b64(str(value["base64"])))
        if value.get("path"):
            return decode_image(Path(value["path"]), data_root=data_root)
        raise ValueError(f"an image dict needs 'bytes', 'base64' or 'path', got keys {sorted(value)}")
    if isinstance(value, (bytes, bytearray)):
        try:
            with Image.open(io.BytesIO(value)) as img:
                return img.convert("RGB")
        except UnidentifiedImageError as err:
            raise ValueError("the image bytes are not an image PIL can read") from err
    if isinstance(value, str) and value.startswith("data:"):
        head, _, payload = value.partition(",")
        if not head.startswith("data:image/") or ";base64" not in head:
            raise ValueError(f"an image data URL must be data:image/<type>;base64,..., got {head[:40]!r}")
        return decode_image(_b64(payload))
    if isinstance(value, (str, Path)):
        return _read_path(Path(value), data_root)
    raise ValueError(f"cannot read an image from a {type(value).__name__}")


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("the image is not valid base64") from err


def _read_path(path: Path, data_root: str | Path | None):
    if data_root is not None:
        root = Path(data_root).resolve()
        resolved = (root / path).resolve() if not path.is_absolute() else path.resolve()
        if not resolved.is_relative_to(root):
            raise ValueError(f"image path {str(path)!r} is outside the data root")
        path = resolved
    if not path.is_file():
        raise ValueError(f"image file {str(path)!r} does not exist")
    return decode_image(path.read_bytes())


def encode_image(image: Any, fmt: str = "PNG") -> str:
    """A ``data:image/png;base64,...`` URL for a ``PIL.Image`` (what ``rewardkit serve`` accepts)."""
    buf = io.BytesIO()
    decode_image(image).save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def row_images(row: dict[str, Any], *, data_root: str | Path | None = None) -> list:
    """The images of one dataset row (``images`` list or single ``image``), decoded; [] when none."""
    if row.get("images") is not None:
        value = row["images"]
        items = value if isinstance(value, (list, tuple)) else [value]
    elif row.get("image") is not None:
        items = [row["image"]]
    else:
        items = []
    return [decode_image(v, data_root=data_root) for v in items]


def multimodal_messages(prompt: str | Sequence[dict[str, Any]], images: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """A chat whose content parts are typed, with ``images`` placed before the first user text
    (TRL's placement, ``trl.data_utils.prepare_multimodal_messages``); images already inside the
    messages stay where they are. A plain-text prompt becomes one user message."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    pending = [decode_image(i) for i in images]
    out = []
    for m in messages:
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else [
            {**p, "image": decode_image(p["image"])} if p.get("type") == "image" and p.get("image") is not None
            else dict(p) for p in (content or [])]
        if m["role"] == "user" and pending:
            parts = [{"type": "image", "image": img} for img in pending] + parts
            pending = []
        out.append({**m, "content": parts})
    if pending:
        raise ValueError(f"{len(pending)} image(s) given but the prompt has no user message to hold them")
    return out


def messages_images(messages: Sequence[dict[str, Any]]) -> list:
    """The images inside a chat's content parts, in order."""
    return [p["image"] for m in messages if isinstance(m.get("content"), list)
            for p in m["content"] if p.get("type") == "image" and p.get("image") is not None]


VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")


def vision_tower(model: Any):
    """The vision encoder of a VLM (Qwen2/2.5-VL ``visual``, LLaVA-style ``vision_tower``, ...)."""
    model = getattr(model, "module", model)  # DDP / DeepSpeed wrappers
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES:
            return module
    raise ValueError(f"{type(model).__name__} has no vision tower (looked for {VISION_TOWER_NAMES})")


class VisionTowerProbe:
    """Counts the forward calls of a model's vision tower and the patch rows it encoded: the check
    that images really reach a VLM during training. ``close()`` removes the hook."""

    def __init__(self, model: Any) -> None:
        self.calls = 0
        self.patches = 0
        self._handle = vision_tower(model).register_forward_hook(self._seen)

    def _seen(self, module: Any, args: tuple, output: Any) -> None:
        self.calls += 1
        if args and hasattr(args[0], "shape"):
            self.patches += int(args[0].shape[0])

    def close(self) -> None:
        self._handle.remove()

