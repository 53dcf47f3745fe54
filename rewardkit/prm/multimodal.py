"""Step scorers for multimodal prompts: images in the prompt, steps in text (VisualPRM-style PRMs).

:class:`VisionTaggedScorer` and :class:`VisionPrefixScorer` are the tagged / prefix scorers on a
vision-language model (loaded with ``AutoModelForImageTextToText``, its processor with
:func:`rewardkit.vision.load_processor`). They take the same ``score(prompts, steps)`` call; a
prompt that carries images is an :class:`ImagePrompt` (a ``str`` with an ``images`` list), which
:class:`~rewardkit.prm.PRMReward` builds from the row's chat prompt or ``image``/``images`` column
when its scorer ``takes_images``. Plain ``str`` prompts score as text.

The prompt is rendered with the processor's chat template (a user turn: images, then the prompt
text; the generation prompt after it), each image placeholder expanded to the image's token count;
steps and tags follow exactly as in the text scorers. Truncation never cuts into an image: a row
whose steps and image do not fit is not scored (``too_long``), like a text row whose steps do not.

ZeRO-3: a sharded forward is a collective over every submodule, the vision tower included, so all
ranks must run it in every forward. Under ZeRO-3 each forward batch therefore carries one extra
"anchor" row (a blank image, no steps, its output dropped) and the idle forwards that keep ranks in
step are that row alone: every rank runs ``embed, vision tower, layers`` in the same order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rewardkit.prm.scorers import PrefixScorer, TaggedScorer
from rewardkit.vision import decode_image, load_processor, messages_images

ANCHOR_SIZE = (28, 28)  # the smallest image a 14-pixel-patch, 2x2-merge processor takes


class ImagePrompt(str):
    """Prompt text with the images that go before it in the PRM's user turn."""

    images: list

    def __new__(cls, text: str, images: Sequence[Any] = ()) -> ImagePrompt:
        obj = super().__new__(cls, text)
        obj.images = [decode_image(i) for i in images]
        return obj

    def __reduce__(self):  # pickles (a scorer sent to a worker) keep the images
        return (ImagePrompt, (str(self), self.images))


def prompt_images(prompt: Any, row: dict[str, Any] | None = None) -> list:
    """The images of one reward row: inside the chat prompt's content parts (what TRL's GRPOTrainer
    passes a VLM's rewards), else the row's ``images``/``image`` column."""
    if isinstance(prompt, list):
        found = messages_images([m for m in prompt if isinstance(m, dict)])
        if found:
            return [decode_image(i) for i in found]
    row = row or {}
    if row.get("images") is not None:
        value = row["images"]
        return [decode_image(i) for i in (value if isinstance(value, (list, tuple)) else [value])]
    if row.get("image") is not None:
        return [decode_image(row["image"])]
    return []


class _ImageRow(list):
    """Token ids of one scored sequence with its images' pixel rows; slices keep them (a prefix
    of the sequence holds the whole prompt, images included)."""

    pixel_values: Any = None
    image_grid_thw: Any = None
    n_image_tokens: int = 0

    def __getitem__(self, k):
        out = super().__getitem__(k)
        if isinstance(k, slice):
            out = self._like(out)
        return out

    def _like(self, ids: list[int]) -> _ImageRow:
        row = _ImageRow(ids)
        row.pixel_values, row.image_grid_thw, row.n_image_tokens = (self.pixel_values, self.image_grid_thw,
                                                                    self.n_image_tokens)
        return row


class _VisionScorer:
    """What the vision scorers add to the text ones (mixed in before them)."""

    takes_images = True

    def _model_class(self):
        from transformers import AutoModelForImageTextToText

        if self.head not in (None, "lm"):
            raise ValueError(f"a vision scorer reads an LM head (head='lm'), not {self.head!r}")
        return AutoModelForImageTextToText

    def _resolve_head(self, model: Any = None) -> str:
        return "lm" if self.head in (None, "lm") else self.head

    def _load(self) -> None:
        if self._lazy_ready:
            return
        super()._load()
        ref = self.tokenizer_ref or self.model_ref
        proc = getattr(self, "_lazy_processor", None)
        if proc is None:
            if not ref:
                raise RuntimeError("no processor: pass processor= (an object) or a model path")
            proc = load_processor(ref, **{k: v for k, v in self.model_kwargs.items()
                                          if k in ("trust_remote_code", "revision")})
        self._lazy_processor = proc
        self._lazy_image_token = getattr(proc, "image_token", "<|image_pad|>")
        self._lazy_image_id = self._lazy_tokenizer.convert_tokens_to_ids(self._lazy_image_token)
        self._lazy_merge = int(getattr(proc.image_processor, "merge_size", 1)) ** 2
        self._lazy_anchor = None

    # -- encoding -----------------------------------------------------------------------------------
    def _features(self, images: list) -> tuple[Any, Any, list[int]]:
        out = self._lazy_processor.image_processor(images=images, return_tensors="pt")
        counts = [int(g.prod()) // self._lazy_merge for g in out["image_grid_thw"]]
        return out["pixel_values"], out["image_grid_thw"], counts

    def _render(self, prompt: str) -> tuple[str, tuple[Any, Any, int] | None]:
        """The prompt text with its images' tokens in place, and (pixel rows, grids, image token count)."""
        images = getattr(prompt, "images", None)
        text = str(super()._prompt_text(str(prompt)))
        if not images:
            return text, None
        msgs = [{"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": text}]}]
        rendered = self._lazy_processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        pixels, grid, counts = self._features(images)
        pieces = rendered.split(self._lazy_image_token)
        if len(pieces) != len(images) + 1:
            raise ValueError(f"the chat template placed {len(pieces) - 1} image tokens for {len(images)} images")
        expanded = pieces[0] + "".join(self._lazy_image_token * n + rest for n, rest in zip(counts, pieces[1:]))
        return expanded, (pixels, grid, sum(counts))

    def _prompt_text(self, prompt: str) -> str:
        if isinstance(prompt, _Rendered):
            return str(prompt)
        return self._render(prompt)[0]

    def encode_many(self, prompts, steps):
        self._load()
        rendered = [self._render(p) for p in prompts]
        # the parent tokenizes the rendered texts (no second rendering) and lays out steps and tags
        out = super().encode_many([_Rendered(t) for t, _ in rendered], steps)
        rows = []
        for (_, feats), (ids, positions, prompt_len) in zip(rendered, out):
            row = _ImageRow(ids)
            if feats is not None:
                row.pixel_values, row.image_grid_thw, row.n_image_tokens = feats
            rows.append((row, positions, prompt_len))
        return rows

    def _fit(self, ids, positions, prompt_len, stats):
        fitted = super()._fit(ids, positions, prompt_len, stats)
        if fitted is None or not isinstance(ids, _ImageRow) or not ids.n_image_tokens:
            return fitted
        row = ids._like(fitted[0])
        if row.count(self._lazy_image_id) != ids.n_image_tokens:  # the cut reached the image
            if self.truncation == "error":
                raise ValueError(f"PRM input exceeds max_length={self.max_length} and a cut would remove image "
                                 "tokens (truncation='error')")
            if stats is not None:
                stats["truncated"] -= 1
                stats["too_long"] += 1
            return None
        return row, fitted[1]

    # -- running --------------------------------------------------------------------------------
    def _forward_extras(self, items, device):
        import torch

        rows = [ids for ids, _ in items if getattr(ids, "pixel_values", None) is not None]
        if not rows:
            return {}
        return {"pixel_values": torch.cat([r.pixel_values for r in rows]).to(device),
                "image_grid_thw": torch.cat([r.image_grid_thw for r in rows]).to(device)}

    def _head_scores(self, input_ids, attention_mask, rows, cols, extra=None):
        extra = dict(extra or {})
        n_image = int((input_ids == self._lazy_image_id).sum())
        if n_image and "pixel_values" not in extra:
            raise ValueError(f"{n_image} image tokens in a PRM batch without pixel values")
        if "pixel_values" in extra:
            # M-RoPE gives image tokens (type 1) their 2-D positions
            extra["mm_token_type_ids"] = (input_ids == self._lazy_image_id).int()
        return super()._head_scores(input_ids, attention_mask, rows, cols, extra)

    def _anchor(self) -> _ImageRow:
        """The ZeRO-3 anchor row: a blank image under the chat template, no steps."""
        if self._lazy_anchor is None:
            from PIL import Image

            prompt = ImagePrompt("", [Image.new("RGB", ANCHOR_SIZE, (0, 0, 0))])
            self._lazy_anchor = self.encode_many([prompt], [[]])[0][0]
        return self._lazy_anchor

    def _batches(self, lengths, extra=0):
        batches = super()._batches(lengths, extra)
        anchor = getattr(self, "_lazy_anchor_index", None)
        if anchor is None:
            return batches
        batches = [[i for i in b if i != anchor] for b in batches]
        return [[*b, anchor] for b in batches if b]  # an anchor-only batch would be a needless forward

    def run_items(self, lengths, fetch, stats: Counter[str] | None = None):
        self._load()
        if not self._lazy_sharded:
            return super().run_items(lengths, fetch, stats)
        anchor, n = self._anchor(), len(lengths)
        self._lazy_anchor_index = n
        try:
            out = super().run_items([*lengths, len(anchor)], lambda i: (anchor, [len(anchor) - 1]) if i == n
                                    else fetch(i), stats)
        finally:
            self._lazy_anchor_index = None
        return out[:n]

    def _idle_forward(self) -> None:
        import torch

        anchor = self._anchor()
        dev = self._lazy_device
        ids = torch.tensor([list(anchor)], dtype=torch.long, device=dev)
        last = torch.tensor([len(anchor) - 1], device=dev)
        with torch.inference_mode():  # the path of a real batch (see HFStepScorer._idle_forward)
            self._head_scores(ids, torch.ones_like(ids), torch.zeros_like(last), last,
                              self._forward_extras([(anchor, [])], dev))


class _Rendered(str):
    """A prompt already rendered by the vision scorer (its parent must not render it again)."""


class VisionTaggedScorer(_VisionScorer, TaggedScorer):
    """:class:`~rewardkit.prm.scorers.TaggedScorer` on a VLM: one forward per trajectory, the images
    in the prompt turn, the score read at every step tag (``head="lm"``: p(good)/(p(good)+p(bad)))."""

    def __init__(self, model: Any, processor: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("head", "lm")
        kwargs.setdefault("add_bos", False)
        kwargs.setdefault("prompt_template", "{prompt}")
        tokenizer = kwargs.pop("tokenizer", None) or (processor.tokenizer if processor is not None else None)
        super().__init__(model, tokenizer, **kwargs)
        self._lazy_processor = processor


class VisionPrefixScorer(_VisionScorer, PrefixScorer):
    """:class:`~rewardkit.prm.scorers.PrefixScorer` on a VLM: one forward per prefix, laid out as the
    tagged scorer lays out the trajectory (``template`` and generation are text-only)."""

    def __init__(self, model: Any, processor: Any = None, **kwargs: Any) -> None:
        if kwargs.get("template") is not None or kwargs.get("max_new_tokens", 0):
            raise ValueError("VisionPrefixScorer scores the tagged layout; template= and max_new_tokens= are "
                             "text-only (PrefixScorer)")
        kwargs.setdefault("head", "lm")
        kwargs.setdefault("add_bos", False)
        kwargs.setdefault("prompt_template", "{prompt}")
        tokenizer = kwargs.pop("tokenizer", None) or (processor.tokenizer if processor is not None else None)
        super().__init__(model, tokenizer, **kwargs)
        self._lazy_processor = processor


def scorer_prompt(prompt_text: str, prompt: Any, row: dict[str, Any] | None = None) -> str:
    """The prompt a scorer gets for one reward row: an :class:`ImagePrompt` when the row has images."""
    images = prompt_images(prompt, row)
    return ImagePrompt(prompt_text, images) if images else prompt_text


__all__ = ["ImagePrompt", "VisionPrefixScorer", "VisionTaggedScorer", "prompt_images", "scorer_prompt"]
