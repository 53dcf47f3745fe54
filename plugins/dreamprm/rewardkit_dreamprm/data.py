"""DreamPRM data: the official JSON formats, a generic step-labelled format, Monte-Carlo labels.

* v1 train JSON: ``{id, sid, input, add, dataset, accuracy (or score/times), image_path, ...}``: one
  step prefix ``add`` of the question ``input`` with soft label ``accuracy``; ``dataset`` is the domain.
* v1 meta JSON: ``{id, true_false, input (question + full "Step k" response), image_path}``. Items
  without steps are dropped and counted (the shipped meta.json has 372 of them, and step presence
  leaks the label there).
* 1.5 JSON (train and meta): ``{id, image, conversations: [{from, value}], true_false?}`` with gpt turns
  '+'/'-' after every step turn.
* generic: rows with ``prompt``/``question``, ``steps`` or ``completions`` (list of step texts) or a
  ``completion``/``response`` text to split, ``labels`` (one per step; bools or floats in [0, 1]) and an
  optional ``domain`` column (TRL's stepwise-supervision format plus ``domain``). Images in ``image``/
  ``image_path``/``images`` are passed through on the chain.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rewardkit.data import load_records
from rewardkit_dreamprm.steps import STEP_HEADER, Chain, make_chain
from rewardkit_dreamprm.trainer import LowerExample, MetaExample

QUESTION_PREFIX = "### Question:\n"


def _records(path_or_rows: str | Path | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(path_or_rows, (str, Path)):
        return load_records(path_or_rows)
    return list(path_or_rows)


def _image(row: dict[str, Any]) -> Any:
    for k in ("image", "image_path", "images"):
        if row.get(k):
            return row[k]
    return None


def load_v1_train(path_or_rows, *, question_key: str = "input", prefix_key: str = "add") -> list[LowerExample]:
    out = []
    for k, r in enumerate(_records(path_or_rows)):
        prefix = str(r[prefix_key])
        if not prefix.strip():
            raise ValueError(f"train item {r.get('id', k)}: empty step prefix")
        if "accuracy" in r:
            y = float(r["accuracy"])
        elif "score" in r and "times" in r:
            y = float(r["score"]) / float(r["times"])
        else:
            raise ValueError(f"train item {r.get('id', k)}: needs 'accuracy' or 'score'/'times'")
        # the PRM sees the official ``add`` text as is, trailing whitespace included
        chain = Chain(question=str(r[question_key]), response=prefix, spans=[(0, len(prefix.rstrip()))],
                      image=_image(r), prefix_ends=[len(prefix)])
        sid = r.get("sid", "")
        out.append(LowerExample(chain=chain, labels=[y], domain=str(r.get("dataset", "default")),
                                id=f"{r.get('id', k)}-{sid}" if sid != "" else str(r.get("id", k))))
    return out


def load_v1_meta(path_or_rows, *, split: str = "dreamprm") -> list[MetaExample]:
    out, dropped = [], 0
    for k, r in enumerate(_records(path_or_rows)):
        text = str(r["input"])
        m = STEP_HEADER.search(text)
        if m is None:
            dropped += 1
            continue
        chain = make_chain(text[: m.start()].strip(), text[m.start():], split, image=_image(r))
        if len(chain) == 0:
            dropped += 1
            continue
        out.append(MetaExample(chain=chain, correct=_truthy(r["true_false"]), id=str(r.get("id", k))))
    if dropped:
        warnings.warn(f"dropped {dropped} meta items without steps (they cannot be aggregated)", stacklevel=2)
    return out


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "correct")
    return bool(v)


def _conversation(r: dict[str, Any]) -> tuple[str, list[str], list[float]]:
    turns = [t for t in r["conversations"] if t.get("from") != "system"]
    if not turns or turns[0].get("from") != "human":
        raise ValueError(f"item {r.get('id')}: the conversation must start with the question")
    question = str(turns[0]["value"]).replace("<image>\n", "").replace("<image>", "")
    if question.startswith(QUESTION_PREFIX):
        question = question[len(QUESTION_PREFIX):]
    steps, labels = [], []
    rest = turns[1:]
    for a, b in zip(rest[0::2], rest[1::2]):
        if a.get("from") != "human" or b.get("from") != "gpt":
            raise ValueError(f"item {r.get('id')}: expected human step / gpt label turns")
        lab = str(b["value"]).strip()
        if lab not in ("+", "-"):
            raise ValueError(f"item {r.get('id')}: step label {lab!r} is neither '+' nor '-'")
        steps.append(str(a["value"]))
        labels.append(1.0 if lab == "+" else 0.0)
    return question, steps, labels


def load_v15_train(path_or_rows) -> list[LowerExample]:
    out = []
    for k, r in enumerate(_records(path_or_rows)):
        q, steps, labels = _conversation(r)
        if not steps:
            raise ValueError(f"train item {r.get('id', k)} has no steps")
        chain = Chain.from_steps(q, steps, image=_image(r))
        out.append(LowerExample(chain=chain, labels=labels, domain=str(r.get("dataset", "default")),
                                id=str(r.get("id", k))))
    return out


def load_v15_meta(path_or_rows) -> list[MetaExample]:
    out, dropped = [], 0
    for k, r in enumerate(_records(path_or_rows)):
        q, steps, _ = _conversation(r)
        if not steps:
            dropped += 1
            continue
        out.append(MetaExample(chain=Chain.from_steps(q, steps, image=_image(r)), correct=_truthy(r["true_false"]),
                               id=str(r.get("id", k))))
    if dropped:
        warnings.warn(f"dropped {dropped} meta items without steps", stacklevel=2)
    return out


def load_generic(path_or_rows, *, split: str | Callable = "dreamprm", per_prefix: bool = False,
                 domain_column: str = "domain") -> list[LowerExample]:
    """Generic step-labelled rows (see the module docstring). ``per_prefix`` makes one sample per
    labelled step (the v1 unit of data)."""
    out = []
    for k, r in enumerate(_records(path_or_rows)):
        q = str(r.get("prompt", r.get("question", "")))
        steps = r.get("steps", r.get("completions"))
        if steps is not None:
            steps = [s for s in steps]
            if any(not str(s).strip() for s in steps):
                raise ValueError(f"row {k}: empty step")
            chain = Chain.from_steps(q, [str(s) for s in steps], image=_image(r))
        else:
            text = r.get("completion", r.get("response"))
            if text is None:
                raise ValueError(f"row {k}: needs 'steps'/'completions' or 'completion'/'response'")
            chain = make_chain(q, str(text), split, image=_image(r))
        labels = [None if y is None else float(y) for y in r["labels"]]
        if len(labels) != len(chain):
            raise ValueError(f"row {k}: {len(labels)} labels for {len(chain)} steps")
        dom = str(r.get(domain_column, "default"))
        rid = str(r.get("id", k))
        if per_prefix:
            for i, y in enumerate(labels):
                if y is None:
                    continue
                sub = Chain(q, chain.response, chain.spans[: i + 1], image=chain.image)
                out.append(LowerExample(sub, [None] * i + [y], dom, f"{rid}-{i}"))
        else:
            out.append(LowerExample(chain, labels, dom, rid))
    return out


def load_meta_generic(path_or_rows, *, split: str | Callable = "dreamprm", correct_column: str = "correct") -> list[MetaExample]:
    out = []
    for k, r in enumerate(_records(path_or_rows)):
        q = str(r.get("prompt", r.get("question", "")))
        if r.get("steps") is not None:
            chain = Chain.from_steps(q, [str(s) for s in r["steps"]], image=_image(r))
        else:
            chain = make_chain(q, str(r.get("completion", r.get("response", ""))), split, image=_image(r))
        if len(chain) == 0:
            continue
        out.append(MetaExample(chain, _truthy(r.get(correct_column, r.get("true_false"))), str(r.get("id", k))))
    return out


# -- Monte-Carlo step labels ---------------------------------------------------------------------

def hf_policy(model: Any, tokenizer: Any, *, temperature: float = 0.6, max_new_tokens: int = 256,
              seed: int | None = None) -> Callable[[list[str], int], list[list[str]]]:
    """A policy ``f(prompts, n) -> n continuations per prompt`` from a causal LM (sampling)."""
    import torch

    def generate(prompts: list[str], n: int) -> list[list[str]]:
        if seed is not None:
            torch.manual_seed(seed)
        tokenizer.padding_side = "left"
        enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens,
                                 num_return_sequences=n, pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]

    return generate


def mc_step_labels(policy: Callable[[list[str], int], list[list[str]]], question: str, chain: Chain, gold: str, *,
                   original_correct: bool | None = None, min_rollouts: int = 4, max_rollouts: int = 16,
                   per_round: int = 4, min_chars: int = 30, grader: Any = None) -> list[tuple[int, int]]:
    """(score, times) per step prefix of ``chain``: ``score`` correct continuations out of ``times``.

    As the official builder: each prefix starts at ``score = 1[original chain correct], times = 1`` when
    ``original_correct`` is given; rollouts continue ``question + "\\n\\n" + prefix``; a continuation
    shorter than ``min_chars`` is ignored except at the last step; sampling goes on while the
    accuracy is strictly between 0 and 1 or fewer than ``min_rollouts`` were graded, up to
    ``max_rollouts`` (the official loop has no cap). Grading is ``math.accuracy`` on prefix +
    continuation against ``gold``.
    """
    if grader is None:
        from rewardkit import get_reward

        grader = get_reward("math.accuracy", on_error="none")
    out = []
    for i in range(len(chain)):
        score, times = (int(bool(original_correct)), 1) if original_correct is not None else (0, 0)
        prefix = chain.prefix(i)
        prompt = question + "\n\n" + prefix
        last = i == len(chain) - 1
        attempts = 0
        while (times < min_rollouts or 0 < score < times) and times < max_rollouts and attempts < 4 * max_rollouts:
            certain = score == 0 or score == times
            need = (min_rollouts - times) if certain else per_round
            k = max(1, min(need, per_round, max_rollouts - times))
            conts = policy([prompt], k)[0]
            attempts += k
            conts = [c for c in conts if last or len(c.strip()) >= min_chars]
            if not conts:
                continue
            texts = [prefix + c for c in conts]
            vals = grader(prompts=[question] * len(texts), completions=texts, solution=[gold] * len(texts))
            for v in vals:
                if v is None:
                    continue
                score += int(v > 0.5)
                times += 1
        out.append((score, times))
    return out


def build_mc_dataset(policy, problems: Sequence[dict[str, Any]], *, split: str = "dreamprm", **kw: Any) -> list[dict[str, Any]]:
    """v1 train JSON records from ``problems`` (``{id?, question, response, solution, domain?, image?}``)
    labelled by :func:`mc_step_labels`."""
    from rewardkit import get_reward

    grader = kw.pop("grader", None) or get_reward("math.accuracy", on_error="none")
    records = []
    for k, p in enumerate(problems):
        chain = make_chain(p["question"], p["response"], split)
        if len(chain) == 0:
            continue
        orig = grader(prompts=[p["question"]], completions=[p["response"]], solution=[p["solution"]])[0]
        labels = mc_step_labels(policy, p["question"], chain, p["solution"], original_correct=bool(orig),
                                grader=grader, **kw)
        for i, (score, times) in enumerate(labels):
            if times == 0:
                continue
            records.append({"id": p.get("id", k), "sid": i + 1, "input": p["question"], "add": chain.prefix(i),
                            "ground_truth": p["solution"], "image_path": p.get("image"),
                            "dataset": p.get("domain", "default"), "score": score, "times": times,
                            "accuracy": score / times})
    return records


def write_json(records: Sequence[dict[str, Any]], path: str | Path) -> None:
    Path(path).write_text(json.dumps(list(records), indent=1), encoding="utf-8")
