"""Tools, the agent loop, rollout rows, the outcome reward and an OpenAI-compatible loopback server."""

import threading
import time

import pytest
from rewardkit_flowgrpo import (
    AgentSystem,
    DocumentStore,
    FlowOutcomeReward,
    FlowRollout,
    FunctionPlanner,
    HFPlanner,
    OpenAIModule,
    Tool,
    ToolRegistry,
    calculator,
    default_registry,
    parse_action,
)
from rewardkit_flowgrpo.modules import ModuleError
from rewardkit_flowgrpo.toy import (
    toy_documents,
    toy_executor,
    toy_generator,
    toy_rows,
    toy_system,
    toy_verifier,
)

from rewardkit import get_reward
from rewardkit.serve.openai_compat import ChatCompletionsServer
from rewardkit.testing import LogCapture


def oracle(prompt: str) -> str:
    return "Tool: calculator" if "lookup(" in prompt else "Tool: lookup"


def test_calculator_and_lookup():
    assert calculator("3 * 7") == "21"
    assert calculator("(2 + 3) ** 2 / 5") == "5"
    assert calculator("7 / 2") == "3.5"
    for bad in ["__import__('os')", "2 ** 999", "1 / 0", "", "x + 1"]:
        with pytest.raises(ValueError):
            calculator(bad)
    store = toy_documents()
    assert store.lookup("price of apples") == "apple: price 7"
    assert "opens" in store.lookup("opening hours")
    with pytest.raises(LookupError):
        store.lookup("zebra")
    with pytest.raises(ValueError):
        DocumentStore([{"title": "x"}])


def test_registry_turns_raises_and_hangs_into_counted_results():
    release = threading.Event()
    reg = ToolRegistry([Tool("boom", lambda c: 1 / 0), Tool("hang", lambda c: release.wait(30), timeout=0.2)])
    try:
        r = reg.call("boom", "x")
        assert not r.ok and "ZeroDivisionError" in r.error and not r.timed_out
        t0 = time.time()
        r = reg.call("hang", "x")
        assert not r.ok and r.timed_out and time.time() - t0 < 5
        assert not reg.call("missing", "x").ok
    finally:
        release.set()


def test_parse_action():
    names = ["calculator", "lookup"]
    assert parse_action("Tool Name: lookup\nSub-Goal: find price", names).tool == "lookup"
    a = parse_action("Context: x\nSub-Goal: add\nTool: calculator", names)
    assert (a.tool, a.sub_goal, a.context) == ("calculator", "add", "x")
    assert parse_action("I will use the lookup tool", names).tool == "lookup"
    assert parse_action("Tool: lookupx", names).tool is None
    assert parse_action("gibberish", names).tool is None


def test_oracle_planner_solves_the_toy_task(tiny_tokenizer):
    system = toy_system(tiny_tokenizer)
    rows = toy_rows(6, seed=3)
    trajs = system.run([r["prompt"] for r in rows], FunctionPlanner(oracle, tiny_tokenizer), group_size=2)
    assert len(trajs) == 12
    for tr in trajs:
        gold = rows[tr.query_id]["answer"]
        assert tr.answer == gold and tr.num_turns == 2 and tr.stopped and tr.error is None
        assert [t.action.tool for t in tr.turns] == ["lookup", "calculator"]
        assert tr.memory.to_dict()["Action Step 1"]["tool_name"] == "lookup"
    # memory is re-rendered into the next planner prompt
    assert "lookup(price of" in tiny_tokenizer.decode(trajs[0].turns[1].prompt_ids)


def _rollout_rows(system, planner, prompts, G):
    roll = FlowRollout(system, G, planner=planner)
    return roll, roll.run(prompts, planner, pad_token_id=system.tokenizer.pad_token_id)


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_tool_error_or_timeout_ends_trajectory_with_reward_zero_and_a_count(tiny_tokenizer, mode):
    release = threading.Event()

    def bad_lookup(command):
        if mode == "raise":
            raise RuntimeError("index offline")
        release.wait(30)
        return "too late"

    tools = ToolRegistry([Tool("calculator", calculator), Tool("lookup", bad_lookup)], timeout=0.3)
    system = AgentSystem(tiny_tokenizer, tools, toy_executor, toy_verifier, toy_generator, max_turns=3)
    # first query fails on its lookup (turn 1); the second query's planner goes straight to the calculator
    planner = FunctionPlanner(lambda p: "Tool: calculator" if "5 plums" in p else "Tool: lookup", tiny_tokenizer)
    prompts = ["How much do 3 apples cost?"] * 6 + ["How much do 5 plums cost?"] * 6
    try:
        roll, rows = _rollout_rows(system, planner, prompts, G=2)
    finally:
        release.set()
    trajs = roll.last_trajectories
    # the failing tool ends its trajectories at turn 1; the calculator-only ones run all 3 turns (a bare
    # count never satisfies the verifier) and answer "5"
    assert [tr.num_turns for tr in trajs] == [1, 1, 3, 3]
    assert all(tr.error and "lookup" in tr.error for tr in trajs[:2])
    assert all(tr.timed_out == (mode == "hang") for tr in trajs[:2])
    assert all(tr.error is None and tr.answer == "5" for tr in trajs[2:])
    # rows: 2 queries x G=2 x T_max=3, padding after the single real turn
    assert len(rows["completion_ids"]) == 12
    assert rows["flowgrpo_is_pad"] == [False, True, True] * 2 + [False] * 6
    assert rows["env_mask"][1] == [0] and rows["env_mask"][0] == [1] * len(rows["completion_ids"][0])
    reward = get_reward("flowgrpo.outcome", judge="exact")
    logs = LogCapture()
    n = len(prompts)
    completions = [tiny_tokenizer.decode(ids, skip_special_tokens=True) for ids in rows["completion_ids"]]
    values = reward(prompts, completions, answer=["21"] * 6 + ["10"] * 6, **{k: v for k, v in rows.items()
                    if k.startswith("flowgrpo_")}, **logs.kwargs())
    assert values == [0.0] * n  # errored trajectories get 0; "5" is wrong for 5 plums (10)
    name = "flowgrpo.outcome"
    assert logs.metrics[f"rewardkit/{name}/tool_errors"] == [2.0]
    assert logs.metrics[f"rewardkit/{name}/timeouts"] == [2.0 if mode == "hang" else 0.0]
    assert logs.metrics[f"rewardkit/{name}/empty"] == [0.0]  # padding rows are not "empty outputs"


def test_outcome_judges_once_per_trajectory_and_broadcasts():
    calls = []

    def judge(q, a, g):
        calls.append(a)
        return float(a == g)

    reward = FlowOutcomeReward(judge=judge)
    cols = dict(answer=["7", "7", "7", "7"], flowgrpo_answer=["7", "7", "8", "8"], flowgrpo_traj_id=[0, 0, 1, 1],
                flowgrpo_is_pad=[False, True, False, False])
    assert reward(["q"] * 4, ["x", "", "y", "z"], **cols) == [1.0, 1.0, 0.0, 0.0]
    assert calls == ["7", "8"]
    # what flowgrpo.broadcast reads: the values and the trajectory each row's value belongs to
    assert reward.last_call.values == [1.0, 1.0, 0.0, 0.0]
    assert reward.last_call.detail("flowgrpo_traj_id") == [0, 0, 1, 1]
    assert reward.last_call.metrics[f"rewardkit/{reward.name}/success"] == 0.5
    with pytest.raises(Exception, match="flowgrpo_answer"):
        FlowOutcomeReward()(["q"], ["x"], answer=["1"])


def test_failed_judge_counts_as_zero():
    def broken(q, a, g):
        raise TimeoutError("judge down")

    reward = FlowOutcomeReward(judge=broken)
    logs = LogCapture()
    out = reward(["q", "q"], ["a", "b"], answer=["1", "1"], flowgrpo_answer=["1", "1"], flowgrpo_traj_id=[0, 1],
                 **logs.kwargs())
    assert out == [0.0, 0.0]
    assert logs.metrics[f"rewardkit/{reward.name}/judge_errors"] == [2.0]


def test_exact_and_math_judges():
    r = FlowOutcomeReward(judge="exact")
    assert r(["q"] * 4, ["a"] * 4, answer=["21", "21", "Paris", "3.5"],
             flowgrpo_answer=["21.0", "The answer is 21.", "paris", "3.50"]) == [1.0, 1.0, 1.0, 1.0]
    m = FlowOutcomeReward(judge="math")
    assert m(["q"] * 2, ["a"] * 2, answer=["1/2", "3"], flowgrpo_answer=["0.5", "4"]) == [1.0, 0.0]


def _scripted_modules(messages, request):
    """The frozen executor, verifier, generator and judge of the toy task, as a served model."""
    prompt = messages[-1]["content"]
    if "Ground truth" in prompt:  # judge
        return ["garbled" if "BROKEN" in prompt else (
            "analysis: same\ntrue_false: True" if "Response: 21" in prompt else "true_false: False")]
    if "Command:" in prompt:  # executor
        return ["Command: price of apple" if "Tool: lookup" in prompt else "Command: 3 * 7"]
    if "Conclusion" in prompt:  # verifier
        return ["Conclusion: STOP" if "-> 21" in prompt else "Conclusion: CONTINUE"]
    return ["Thinking... <answer>21</answer>"]  # generator


@pytest.fixture
def chat_server():
    with ChatCompletionsServer(_scripted_modules) as server:
        yield server.base_url


def test_frozen_modules_and_llm_judge_over_openai_compatible_http(chat_server, tiny_tokenizer):
    module = OpenAIModule(chat_server, "frozen-7b")
    system = AgentSystem(tiny_tokenizer, default_registry(), module, module, module, max_turns=3, workers=2)
    trajs = system.run(["How much do 3 apples cost?"], FunctionPlanner(oracle, tiny_tokenizer), group_size=2)
    for tr in trajs:
        assert [t.command for t in tr.turns] == ["price of apple", "3 * 7"]
        assert tr.stopped and tr.answer == "21"
    reward = FlowOutcomeReward(judge="llm", judge_model={"base_url": chat_server, "model": "judge"})
    logs = LogCapture()
    out = reward(["q"] * 3, ["x"] * 3, answer=["21", "21", "BROKEN"], flowgrpo_answer=["21", "20", "21"],
                 flowgrpo_traj_id=[0, 1, 2], **logs.kwargs())
    assert out == [1.0, 0.0, 0.0]
    assert logs.metrics[f"rewardkit/{reward.name}/judge_errors"] == [1.0]
    with pytest.raises(ModuleError):
        OpenAIModule(chat_server.replace("/v1", "/nope"), "m").complete([{"role": "user", "content": "hi"}])


def test_rollout_rows_keep_sampler_ids_and_logprobs(tiny_model_path, tiny_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    planner = HFPlanner(model, tiny_tokenizer, max_new_tokens=6, temperature=0.7)
    system = toy_system(tiny_tokenizer, max_turns=2)
    roll, rows = _rollout_rows(system, planner, ["How much do 3 apples cost?"] * 4, G=2)
    trajs = roll.last_trajectories
    assert len(rows["prompt_ids"]) == 4 and rows["flowgrpo_traj_id"] == [0, 0, 1, 1]
    row = 0
    for tr in trajs:
        for slot in range(2):
            if slot < tr.num_turns:
                turn = tr.turns[slot]
                assert rows["completion_ids"][row] == turn.completion_ids  # the sampler's ids, as sampled
                assert rows["prompt_ids"][row] == turn.prompt_ids
                assert len(rows["logprobs"][row]) == len(turn.completion_ids)
            row += 1
    # the stored log-probs are those of the sampling distribution (logits / temperature)
    turn = trajs[0].turns[0]
    ids = torch.tensor([turn.prompt_ids + turn.completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(turn.prompt_ids) - 1:-1] / 0.7
    expected = logits.log_softmax(-1).gather(-1, torch.tensor(turn.completion_ids)[:, None]).squeeze(-1)
    assert torch.allclose(torch.tensor(turn.logprobs), expected, atol=1e-4)


def test_rollout_rejects_prompts_not_grouped_by_g_times_tmax(tiny_tokenizer):
    roll = FlowRollout(toy_system(tiny_tokenizer, max_turns=3), 2)
    with pytest.raises(ValueError, match="multiple of G\\*T_max"):
        roll.split_queries(["a"] * 5)
    with pytest.raises(ValueError, match="mixed run"):
        roll.split_queries(["a"] * 5 + ["b"])
    assert roll.split_queries(["a"] * 6 + ["b"] * 6) == ["a", "b"]


def test_format_warmup_teaches_the_tool_format(tiny_model_path, tiny_tokenizer):
    import torch
    from rewardkit_flowgrpo.toy import format_warmup
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    system = toy_system(tiny_tokenizer)
    losses = format_warmup(model, tiny_tokenizer, system, [r["prompt"] for r in toy_rows(4)], steps=12,
                           batch_size=8, lr=5e-3)
    assert len(losses) == 12 and all(x == x for x in losses)
    assert losses[-1] < 0.5 * losses[0]


def test_outcome_reward_pickles_for_trl_rollout_processes():
    import pickle

    for judge in ("exact", "math"):
        r = pickle.loads(pickle.dumps(get_reward("flowgrpo.outcome", judge=judge)))
        assert r.name == "flowgrpo.outcome" and r.kind == "multi_turn"
        assert r(["q"], ["x"], answer=["4"], flowgrpo_answer=["4"]) == [1.0]
