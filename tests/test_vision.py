"""The tiny offline Qwen2.5-VL, its processor, image decoding, and a real TRL GRPO run on images."""

from __future__ import annotations

import base64
import importlib.util
import io

import pytest
import torch
from datasets import Dataset
from PIL import Image

from rewardkit.testing import tiny_grpo_config, tiny_images
from rewardkit.vision import (
    decode_image,
    encode_image,
    is_vlm_processor,
    load_processor,
    messages_images,
    multimodal_messages,
    row_images,
)


def _chat(image, text="What is 2 + 3?"):
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def test_tiny_vlm_loads_through_the_auto_classes(tiny_vlm_path, tiny_vlm_processor):
    from transformers import AutoConfig, AutoModelForImageTextToText, Qwen2_5_VLForConditionalGeneration

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_path)
    assert type(model) is Qwen2_5_VLForConditionalGeneration
    # TRL's create_model_from_path loads getattr(transformers, config.architectures[0])
    assert AutoConfig.from_pretrained(tiny_vlm_path).architectures == ["Qwen2_5_VLForConditionalGeneration"]
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 < n < 400_000, n
    assert type(tiny_vlm_processor).__name__ == "Qwen2_5_VLProcessor"
    assert is_vlm_processor(tiny_vlm_processor)
    tok = tiny_vlm_processor.tokenizer
    for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|im_start|>", "<|im_end|>"):
        assert len(tok(t, add_special_tokens=False).input_ids) == 1, t
    assert tok.convert_tokens_to_ids("<|image_pad|>") == model.config.image_token_id
    assert tok.decode(tok("The answer is \\boxed{5}.").input_ids) == "The answer is \\boxed{5}."


def test_auto_processor_needs_torchvision_and_load_processor_does_not(tiny_vlm_path):
    from transformers import AutoProcessor

    if importlib.util.find_spec("torchvision") is not None:
        assert type(AutoProcessor.from_pretrained(tiny_vlm_path)).__name__ == "Qwen2_5_VLProcessor"
    else:  # transformers 5.x builds the video processor eagerly (huggingface/transformers#48558)
        with pytest.raises(ImportError, match="(?i)torchvision"):
            AutoProcessor.from_pretrained(tiny_vlm_path)
    assert load_processor(tiny_vlm_path).image_processor is not None


def test_chat_template_places_one_image_token_per_merged_patch(tiny_vlm_path, tiny_vlm_processor):
    from transformers import AutoModelForImageTextToText

    proc = tiny_vlm_processor
    image = Image.new("RGB", (100, 80), (200, 10, 10))
    out = proc.apply_chat_template([_chat(image)], add_generation_prompt=True, tokenize=True, return_dict=True,
                                   return_tensors="pt")
    ids = out["input_ids"][0].tolist()
    image_id = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    t, h, w = out["image_grid_thw"][0].tolist()
    assert ids.count(image_id) == t * h * w // 4 > 0
    assert out["pixel_values"].shape[0] == t * h * w
    text = proc.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\n<|vision_start|><|image_pad|>")
    assert text.endswith("<|vision_end|>What is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")
    # the images change the model's output: the vision tower really feeds the text model
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_path)
    other = proc.apply_chat_template([_chat(Image.new("RGB", (100, 80), (0, 0, 250)))], add_generation_prompt=True,
                                     tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        a, b = model(**out).logits[0, -1], model(**other).logits[0, -1]
    assert not torch.allclose(a, b)


def test_tiny_vlm_build_is_seeded(tmp_path):
    from safetensors.torch import load_file

    from rewardkit.testing import build_tiny_vlm

    a = load_file(build_tiny_vlm(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(build_tiny_vlm(tmp_path / "b", seed=3) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_grpo_trainer_trains_the_tiny_vlm_on_images(tmp_path, tiny_vlm_path, tiny_vlm_processor):
    """TRL 1.16 moves a row's ``image`` into the chat, the processor expands image tokens, and the
    vision tower runs in generation and in the loss forward passes."""
    from trl import GRPOTrainer

    images = tiny_images(4)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "image": img}
                            for i, img in enumerate(images)])
    seen: dict[str, list] = {"pixel_values": [], "image_tokens": []}

    def reward(completions, prompts, **kw):
        return [float(len(c[0]["content"]) % 3) for c in completions]

    trainer = GRPOTrainer(model=str(tiny_vlm_path), reward_funcs=reward, train_dataset=ds,
                          processing_class=tiny_vlm_processor, args=tiny_grpo_config(tmp_path, max_steps=2))
    image_id = trainer.model.config.image_token_id
    trainer.model.model.visual.register_forward_hook(
        lambda mod, args, out: seen["pixel_values"].append(args[0].shape[0]))
    original = trainer._compute_loss

    def spy(model, inputs):
        seen["image_tokens"].append(int((inputs["prompt_ids"] == image_id).sum()))
        assert "pixel_values" in inputs and "image_grid_thw" in inputs
        return original(model, inputs)

    trainer._compute_loss = spy
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert seen["pixel_values"] and all(n > 0 for n in seen["pixel_values"])
    assert seen["image_tokens"] and all(n > 0 for n in seen["image_tokens"])
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any("visual" in n for n in changed), "the vision tower got no update"


# -- image decoding ---------------------------------------------------------------------------------

def _png(color=(1, 2, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_image_reads_every_declared_form(tmp_path):
    raw = _png()
    (tmp_path / "a.png").write_bytes(raw)
    b64 = base64.b64encode(raw).decode()
    forms = [raw, {"bytes": raw}, {"base64": b64}, f"data:image/png;base64,{b64}", str(tmp_path / "a.png"),
             {"path": str(tmp_path / "a.png")}, Image.open(io.BytesIO(raw))]
    for form in forms:
        img = decode_image(form)
        assert img.mode == "RGB" and img.getpixel((0, 0)) == (1, 2, 3)
    assert decode_image("a.png", data_root=tmp_path).getpixel((0, 0)) == (1, 2, 3)
    assert decode_image(encode_image(Image.new("RGB", (4, 4), (9, 9, 9)))).getpixel((1, 1)) == (9, 9, 9)


def test_decode_image_refuses_bad_input_and_paths_outside_the_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.png").write_bytes(_png())
    bad = [b"not an image", "data:image/png;base64,@@@", "data:text/plain;base64,aGk=", {"x": 1}, 3.5,
           str(tmp_path / "missing.png"), "aGVsbG8="]
    for value in bad:
        with pytest.raises(ValueError):
            decode_image(value)
    for path in ("../secret.png", str(tmp_path / "secret.png")):
        with pytest.raises(ValueError, match="outside the data root"):
            decode_image(path, data_root=tmp_path / "root")


def test_multimodal_messages_follow_trl_placement():
    from trl.data_utils import prepare_multimodal_messages

    img = Image.new("RGB", (8, 8))
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is shown?"}]
    ours = multimodal_messages(chat, [img])
    assert ours == prepare_multimodal_messages(chat, images=[img])
    assert messages_images(ours) == [img]
    assert multimodal_messages("Hi", [img])[0]["content"][0]["type"] == "image"
    with pytest.raises(ValueError):
        multimodal_messages([{"role": "system", "content": "x"}], [img])
    assert row_images({"image": _png()})[0].size == (8, 8)
    assert row_images({"images": [_png(), _png()]})[1].size == (8, 8)
    assert row_images({"prompt": "x"}) == []
