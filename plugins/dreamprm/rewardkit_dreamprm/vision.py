"""DreamPRM on a vision-language model: both PRMs score image + text chains.

A :class:`~rewardkit_dreamprm.steps.Chain` carries its picture in ``chain.image`` (one image or a
list; a ``PIL.Image``, bytes, a path or a data URL). The question turn of the PRM's input holds the
image(s) before the question text (the released DreamPRM prompts do the same with Qwen2.5-VL); the
steps stay text.

* :class:`VisionValueHeadPRM` (v1): one row per step prefix, each with the chain's image;
* :class:`VisionGenerativePRM` (1.5): one judging dialogue per chain, p("+") at every step slot.

The text is rendered with the chat template and every image placeholder is expanded to the number
of image tokens the processor gives that image, so the character offsets the text PRMs use to find
their slots stay right, and the pixel rows travel in the same batch (``pixel_values``,
``image_grid_thw``) through ``forward``, the bi-level trainer's ``functional_call`` and DARTS
perturbations alike. Chains without an image score as text.

:func:`make_vision_toy` is the text toy (:func:`~rewardkit_dreamprm.toy.make_toy`) with each problem
rendered to a picture and the question text replaced by "Compute the expression in the image."
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rewardkit.vision import decode_image, load_processor, save_processor
from rewardkit_dreamprm.models import EncodingError, GenerativePRM, ValueHeadPRM, is_model_path, load_kwargs
from rewardkit_dreamprm.steps import Chain

VISION_KEYS = ("pixel_values", "image_grid_thw")
IMAGE_QUESTION = "Compute the expression in the image."


class _ImageRow(list):
    """Token ids of one PRM row, with the pixel rows and grids of the images in it."""

    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None


def _chain_images(chain: Chain) -> list:
    if chain.image is None:
        return []
    items = chain.image if isinstance(chain.image, (list, tuple)) else [chain.image]
    return [decode_image(i) for i in items]


def _cat_rows(rows: Sequence[Any]) -> dict[str, torch.Tensor]:
    pv = [r.pixel_values for r in rows if getattr(r, "pixel_values", None) is not None]
    if not pv:
        return {}
    return {"pixel_values": torch.cat(pv), "image_grid_thw": torch.cat([r.image_grid_thw for r in rows
                                                                        if r.pixel_values is not None])}


class _VisionPRM:
    """What both vision PRMs add to the text ones (mixed in before them)."""

    processor: Any
    lm: nn.Module
    tokenizer: Any
    max_length: int

    def _setup_vision(self, processor: Any) -> None:
        self.processor = processor
        self.image_token = getattr(processor, "image_token", "<|image_pad|>")
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self.merge = int(getattr(processor.image_processor, "merge_size", 1)) ** 2
        self._features: dict[int, tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._log: list[_ImageRow] | None = None

    def _image_features(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        hit = self._features.get(id(image))
        if hit is None or hit[0] is not image:
            if len(self._features) > 512:
                self._features.clear()
            out = self.processor.image_processor(images=[image], return_tensors="pt")
            hit = (image, out["pixel_values"], out["image_grid_thw"])
            self._features[id(image)] = hit  # the image is kept, so its id is not reused meanwhile
        return hit[1], hit[2]

    def _with_images(self, messages: list[dict[str, Any]], images: list) -> list[dict[str, Any]]:
        """The question turn (the first user message) with the images before its text."""
        if not images:
            return messages
        out, placed = [], False
        for m in messages:
            if m["role"] == "user" and not placed:
                m = {"role": "user", "content": [*({"type": "image", "image": img} for img in images),
                                                 {"type": "text", "text": m["content"]}]}
                placed = True
            out.append(m)
        return out

    def _chat(self, messages, add_generation_prompt):  # type: ignore[override]
        text = super()._chat(messages, add_generation_prompt)  # type: ignore[misc]
        images = [p["image"] for m in messages if isinstance(m.get("content"), list)
                  for p in m["content"] if p.get("type") == "image"]
        if not images:
            return text
        pieces = text.split(self.image_token)
        if len(pieces) != len(images) + 1:
            raise EncodingError(f"the chat template placed {len(pieces) - 1} image tokens for {len(images)} images")
        out = [pieces[0]]
        for img, rest in zip(images, pieces[1:]):
            _, grid = self._image_features(img)
            out.append(self.image_token * (int(grid.prod()) // self.merge) + rest)
        return "".join(out)

    def _image_row(self, ids: list[int], images: list) -> _ImageRow:
        row = _ImageRow(ids)
        if images:
            feats = [self._image_features(img) for img in images]
            want = sum(int(g.prod()) // self.merge for _, g in feats)
            if row.count(self.image_token_id) != want:
                raise EncodingError(f"the row keeps {row.count(self.image_token_id)} of its {want} image tokens "
                                    f"(max_length={self.max_length} cut into the image); raise max_length")
            row.pixel_values = torch.cat([pv for pv, _ in feats])
            row.image_grid_thw = torch.cat([g for _, g in feats])
        if self._log is not None:
            self._log.append(row)
        return row

    def collate(self, rows):  # type: ignore[override]
        enc = super().collate(rows)  # type: ignore[misc]
        enc.update(_cat_rows([ids for ids, _ in rows]))  # rows are (token ids, slot positions)
        return enc

    def encode(self, chains, steps=None, labels=None):  # type: ignore[override]
        self._log = []
        try:
            enc = super().encode(chains, steps=steps, labels=labels)  # type: ignore[misc]
            enc.update(_cat_rows(self._log))  # the rows in the order the text encoder stacked them
        finally:
            self._log = None
        return enc

    def _lm(self, input_ids, attention_mask, pixel_values, image_grid_thw, logits_to_keep):
        n_image_tokens = int((input_ids == self.image_token_id).sum())
        if n_image_tokens and pixel_values is None:
            raise EncodingError(f"{n_image_tokens} image tokens in the batch but no pixel values")
        extra = {}
        if pixel_values is not None:
            # M-RoPE needs to know which tokens are image tokens (1) to give them 2-D positions
            extra = {"pixel_values": pixel_values, "image_grid_thw": image_grid_thw,
                     "mm_token_type_ids": (input_ids == self.image_token_id).int()}
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep, **extra)

    def save_pretrained(self, path: str) -> None:
        super().save_pretrained(path)  # type: ignore[misc]
        save_processor(self.processor, path)


def _load_vlm(model: Any, processor: Any, dtype: Any, attn_implementation: str | None):
    from transformers import AutoModelForImageTextToText

    if is_model_path(model):
        lm = AutoModelForImageTextToText.from_pretrained(str(model), **load_kwargs(dtype, attn_implementation))
        return lm, processor if processor is not None else load_processor(str(model))
    if processor is None:
        raise ValueError("pass the processor with an in-memory model")
    return model, processor


class VisionValueHeadPRM(_VisionPRM, ValueHeadPRM):
    """DreamPRM v1 on a VLM: sigmoid(Linear(vocab logits of the last token)) for each step prefix,
    the question turn holding the chain's image."""

    FORWARD_KEYS = ValueHeadPRM.FORWARD_KEYS + VISION_KEYS

    def __init__(self, lm: nn.Module, processor: Any, **kw: Any) -> None:
        ValueHeadPRM.__init__(self, lm, processor.tokenizer, **kw)
        self._setup_vision(processor)

    @classmethod
    def from_pretrained(cls, model: Any, processor: Any = None, *, dtype: Any = None,  # type: ignore[override]
                        attn_implementation: str | None = None, **kw: Any) -> VisionValueHeadPRM:
        import os

        lm, proc = _load_vlm(model, processor, dtype, attn_implementation)
        prm = cls(lm, proc, **kw)
        if is_model_path(model):
            head_file = os.path.join(str(model), "dreamprm_head.pt")
            if os.path.exists(head_file):
                prm.head.load_state_dict(torch.load(head_file, map_location="cpu", weights_only=True))
        return prm

    def prefix_text(self, chain: Chain, i: int) -> str:
        msgs = [{"role": "user", "content": chain.question + self.question_sep + chain.prefix(i)}]
        return self._chat(self._with_images(msgs, _chain_images(chain)), True)

    def prefix_ids(self, chain: Chain, i: int) -> list[int]:
        return self._image_row(super().prefix_ids(chain, i), _chain_images(chain))

    def forward(self, input_ids, attention_mask, pixel_values=None, image_grid_thw=None) -> torch.Tensor:
        out = self._lm(input_ids, attention_mask, pixel_values, image_grid_thw, 1)
        return self.head(out.logits[:, -1, :].float()).squeeze(-1)


class VisionGenerativePRM(_VisionPRM, GenerativePRM):
    """DreamPRM-1.5 on a VLM: p("+") at every step slot of the judging dialogue, the question turn
    holding the chain's image."""

    FORWARD_KEYS = GenerativePRM.FORWARD_KEYS + VISION_KEYS

    def __init__(self, lm: nn.Module, processor: Any, **kw: Any) -> None:
        GenerativePRM.__init__(self, lm, processor.tokenizer, **kw)
        self._setup_vision(processor)

    @classmethod
    def from_pretrained(cls, model: Any, processor: Any = None, *, dtype: Any = None,  # type: ignore[override]
                        attn_implementation: str | None = None, **kw: Any) -> VisionGenerativePRM:
        lm, proc = _load_vlm(model, processor, dtype, attn_implementation)
        return cls(lm, proc, **kw)

    def dialogue(self, chain: Chain, labels: Sequence[float] | None = None) -> list[dict[str, Any]]:
        return self._with_images(super().dialogue(chain, labels), _chain_images(chain))

    def _encode_one(self, chain: Chain, labels: Sequence[float] | None) -> tuple[list[int], list[int]]:
        ids, positions = super()._encode_one(chain, labels)
        return self._image_row(ids, _chain_images(chain)), positions

    def forward(self, input_ids, attention_mask, slot_rows, slot_pos, pixel_values=None,
                image_grid_thw=None) -> torch.Tensor:
        keep, inverse = torch.unique(slot_pos, sorted=True, return_inverse=True)
        out = self._lm(input_ids, attention_mask, pixel_values, image_grid_thw, keep)
        logp = torch.log_softmax(out.logits[slot_rows, inverse].float(), dim=-1)
        return torch.stack([logp[:, self.plus_id], logp[:, self.minus_id]], dim=-1)


def is_vision_prm(prm: Any) -> bool:
    """True for the PRMs of this module (they take ``chain.image``)."""
    return isinstance(prm, _VisionPRM)


def vision_prm_class(variant: str) -> type:
    """The vision PRM class of a DreamPRM variant (``"v1"`` or ``"1.5"``)."""
    return VisionValueHeadPRM if variant == "v1" else VisionGenerativePRM


def is_vlm_checkpoint(path: Any) -> bool:
    """True when ``path`` holds a vision-language model (its config has a ``vision_config``)."""
    import json
    import os

    config = os.path.join(str(path), "config.json")
    if not os.path.isfile(config):
        return False
    with open(config) as fh:
        return "vision_config" in json.load(fh)


# -- a multimodal toy: the arithmetic problems as pictures ------------------------------------------

def render_problem(text: str, *, size: tuple[int, int] = (112, 56), seed: int = 0):
    """The problem text drawn black on white (PIL's built-in font): a small picture of the question."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(f"{seed}:{text}")
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    words, lines, line = text.split(), [], ""
    for w in words:  # wrap to the width
        if line and draw.textlength(line + " " + w) > size[0] - 6:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    y = rng.randint(2, 6)
    for ln in lines:
        draw.text((rng.randint(2, 5), y), ln, fill=(0, 0, 0))
        y += 12
    return img


def make_vision_toy(*, image_size: tuple[int, int] = (112, 56), keep_question_text: bool = False,
                    **toy_kwargs: Any) -> dict[str, Any]:
    """:func:`~rewardkit_dreamprm.toy.make_toy` with every problem rendered to a picture in
    ``chain.image`` (one picture per problem, shared by its chains); the question text becomes
    :data:`IMAGE_QUESTION` unless ``keep_question_text``. Labels, domains and corruption are the text
    toy's, so the weights should move the same way."""
    from rewardkit_dreamprm.toy import make_toy

    toy = make_toy(**toy_kwargs)
    pictures: dict[str, Any] = {}

    def picture(chain: Chain) -> Chain:
        q = chain.question
        if q not in pictures:
            pictures[q] = render_problem(q, size=image_size)
        chain.image = pictures[q]
        chain.meta.setdefault("question_text", q)
        if not keep_question_text:
            chain.question = IMAGE_QUESTION
        return chain

    for e in toy["train"]:
        picture(e.chain)
    for e in toy["meta"]:
        picture(e.chain)
    for p in toy["eval"]:
        for c in p["candidates"]:
            picture(c)
    return toy


def run_vision_toy(model: str | None = "tiny", *, variant: str = "v1", weighting: str = "domain", steps: int = 120,
                   seed: int = 0, threads: int | None = 1, **toy_kwargs: Any) -> dict[str, Any]:
    """Bi-level DreamPRM on the rendered-problem toy (corrupted ``mix``, 70% of its labels flipped,
    the text claim test's settings), then Best-of-N on its held-out image chains.

    ``model``: ``"tiny"`` (the offline tiny Qwen2.5-VL) or a VLM id / path. Returns the learned
    weights, the Best-of-N accuracy, seconds per lower step and the peak resident memory."""
    import resource
    import time

    from rewardkit_dreamprm.bon import best_of_n_eval
    from rewardkit_dreamprm.config import DreamPRMConfig
    from rewardkit_dreamprm.trainer import DreamPRMTrainer

    if threads:
        torch.set_num_threads(threads)
    if model in (None, "tiny"):
        from rewardkit.testing import tiny_vlm_dir

        model = str(tiny_vlm_dir())
    kw = dict(n_train_per_domain=100, n_meta=48, n_eval=32, n_candidates=6, corrupted=("mix",), flip=0.7, seed=seed)
    kw.update(toy_kwargs)
    toy = make_vision_toy(**kw)
    torch.manual_seed(seed)
    cls = VisionValueHeadPRM if variant == "v1" else VisionGenerativePRM
    prm = cls.from_pretrained(model)
    base = dict(lr=1e-3, meta_lr=0.1, batch_size=16, meta_batch_size=8, unroll_steps=2, lr_scheduler="constant",
                logging_steps=1000, weighting=weighting, seed=seed)
    config = DreamPRMConfig(**base) if variant == "v1" else DreamPRMConfig.v15(**base)
    trainer = DreamPRMTrainer(prm, toy["train"], toy["meta"], config)
    start = time.perf_counter()
    trainer.train(max_steps=steps)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        bon = best_of_n_eval(prm, toy["eval"], batch_size=64)
    return {"weights": trainer.weight_table() if weighting == "domain" else None, "bon": bon["accuracy"],
            "oracle": bon["oracle"], "random_pick": bon["mean_candidate"], "by_domain": bon["by_domain"],
            "seconds_per_step": seconds / max(1, steps),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parameters": sum(p.numel() for p in prm.parameters())}


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import json

    p = argparse.ArgumentParser(description="DreamPRM bi-level training on rendered arithmetic problems (a VLM)")
    p.add_argument("--model", default="tiny", help="'tiny' (offline) or a VLM id / path, e.g. Qwen/Qwen2.5-VL-3B-Instruct")
    p.add_argument("--variant", choices=["v1", "1.5"], default="v1")
    p.add_argument("--weighting", default="domain", help="domain | none | instance_table | instance_net")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave as is)")
    args = p.parse_args(argv)
    out = run_vision_toy(args.model, variant=args.variant, weighting=args.weighting, steps=args.steps,
                         seed=args.seed, threads=args.threads or None)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()


__all__ = ["IMAGE_QUESTION", "VisionGenerativePRM", "VisionValueHeadPRM", "is_vision_prm", "is_vlm_checkpoint",
           "vision_prm_class", "make_vision_toy", "render_problem",
           "run_vision_toy"]
