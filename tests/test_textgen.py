"""rewardkit.textgen: one text-model interface over a local model, an HTTP server and a function."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

import rewardkit
from rewardkit.serve.openai_compat import ChatCompletionsServer
from rewardkit.textgen import (
    CallableTextModel,
    HFTextModel,
    OpenAITextModel,
    TextModel,
    TextModelError,
    TextModelServer,
    as_messages,
    text_model,
)


def test_specs_build_the_right_model(tiny_model_path):
    assert isinstance(text_model(f"hf:{tiny_model_path}"), HFTextModel)
    assert text_model(str(tiny_model_path)).model == str(tiny_model_path)
    m = text_model("openai:http://127.0.0.1:8000/v1/#qwen-7b", api_key_env="KEY", max_tokens=9)
    assert (type(m), m.base_url, m.model, m.api_key_env, m.max_tokens) == (
        OpenAITextModel, "http://127.0.0.1:8000/v1", "qwen-7b", "KEY", 9)
    assert text_model("https://api.example/v1").model == "default"
    assert isinstance(text_model({"type": "hf", "model": str(tiny_model_path)}), HFTextModel)
    assert text_model({"type": "openai", "base_url": "http://h/v1", "model": "m"}).model == "m"
    fn = CallableTextModel(lambda p: p)
    assert text_model(fn) is fn and isinstance(text_model(len), CallableTextModel)
    with pytest.raises(ValueError, match="type must be"):
        text_model({"type": "vllm"})
    with pytest.raises(ValueError, match="http"):
        text_model("openai:localhost:8000")
    with pytest.raises(TypeError):
        text_model(42)


def test_callable_gets_the_options_it_names_and_is_checked():
    seen = []

    def fn(prompt, *, n, max_tokens):
        seen.append((prompt, n, max_tokens))
        return [f"{prompt}-{i}" for i in range(n)]

    m = CallableTextModel(fn, max_tokens=5)
    assert m.generate(["a", "b"], n=2) == [["a-0", "a-1"], ["b-0", "b-1"]]
    assert m("c", max_tokens=7) == "c-0" and seen[-1] == ("c", 1, 7)  # per-call override of the default
    assert CallableTextModel(lambda msgs: msgs[-1]["content"].upper(), messages=True)("hi") == "HI"
    with pytest.raises(TextModelError, match="expected 2 strs"):
        CallableTextModel(lambda p, **_: "one").generate(["x"], n=2)
    with pytest.raises(TextModelError, match="expected a str"):
        CallableTextModel(lambda p: 3)("x")
    assert as_messages("q", system="s") == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]


def test_a_subclass_may_implement_only_complete():
    class Echo(TextModel):
        def complete(self, prompt, **options):
            return str(prompt)

    assert Echo().generate(["a"], n=2) == [["a", "a"]]
    with pytest.raises(NotImplementedError):
        TextModel().generate(["a"])


def test_local_model_and_the_same_model_served_over_http_agree(tiny_model_path):
    local = HFTextModel(str(tiny_model_path), max_tokens=6, batch_size=2)
    prompts = ["Ben has 5 stones.", [{"role": "user", "content": "2 + 2?"}], "Why?"]
    expected = local.generate(prompts)
    assert len(expected) == 3 and all(len(a) == 1 for a in expected)
    with TextModelServer(local, model_name="tiny") as server:
        remote = text_model(f"openai:{server.base_url}#tiny", max_tokens=6, guided_choice_field="guided_choice")
        assert remote.generate(prompts) == expected
        choices = ["Score: 0", "Score: 5", "Score: 9"]
        assert remote.generate(prompts, choices=choices) == local.generate(prompts, choices=choices)
        sampled = remote.generate(prompts[:1], n=3, temperature=1.0, seed=1)
        assert len(sampled[0]) == 3
        assert sampled == local.generate(prompts[:1], n=3, temperature=1.0, seed=1)  # seeded: reproducible
        with pytest.raises(TextModelError, match="HTTP 404"):
            OpenAITextModel(server.base_url.replace("/v1", "/nope"), max_retries=0).generate(["x"])


def test_servers_that_ignore_n_are_asked_again():
    with ChatCompletionsServer(lambda messages, request: ["one answer"]) as server:
        m = OpenAITextModel(server.base_url, concurrency=1)
        assert m.generate(["a", "b"], n=3) == [["one answer"] * 3] * 2
        assert server.requests == 6
    with ChatCompletionsServer(lambda messages, request: ["x", "y"]) as server:
        with pytest.raises(TextModelError, match="returned 2 choices, asked for n=1"):
            OpenAITextModel(server.base_url).generate(["a"])


def test_models_pickle_without_weights(tiny_model_path):
    m = HFTextModel(str(tiny_model_path), max_tokens=3)
    before = m("hi")
    copy = pickle.loads(pickle.dumps(m))
    assert copy._lazy_model is None and copy("hi") == before
    in_memory = pickle.loads(pickle.dumps(HFTextModel(m.load()[0], m.load()[1])))
    with pytest.raises(TextModelError, match="in-memory model"):
        in_memory("hi")


def test_importing_rewardkit_imports_no_torch_and_exports_the_names():
    code = ("import sys, rewardkit; rewardkit.text_model; rewardkit.request_json; rewardkit.PRMTrainer; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert rewardkit.TextModel is TextModel and "text_model" in rewardkit.__all__
