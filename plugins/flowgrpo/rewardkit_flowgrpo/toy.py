"""The toy tool task: a shop whose prices live only in local documents.

A query "How much do 3 apples cost?" needs two tools in order: ``lookup`` (the price is in the
documents only) and then ``calculator`` (3 * price). The frozen modules are plain Python here:

* executor: ``lookup`` gets "price of <item>", ``calculator`` gets "<n> * <price>" with the price
  read from the last successful lookup (just "<n>" when none was looked up yet);
* verifier: STOP after a successful calculator call that used a looked-up price;
* generator: the last calculator result (else the last number found), or "unknown".

So a trajectory succeeds exactly when the planner calls ``lookup`` and later ``calculator`` within
T_max turns. A planner that ignores its memory and picks ``lookup`` with probability p at every
turn succeeds with probability 2p(1-p) <= 1/2 at T_max = 3; going above 1/2 needs reading the memory.
:func:`format_warmup` teaches a tiny random model only the *format* ("Tool: <name>", the tool
picked uniformly at random whatever the state), which starts it near 1/2 minus malformed outputs;
Flow-GRPO has to learn which tool goes with which memory state.

:func:`default_registry` is the shipped tool registry (``calculator`` and ``lookup``), over the shop's
documents unless given others.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rewardkit_flowgrpo.agent import AgentSystem, Memory, PlannerAction
from rewardkit_flowgrpo.planners import FunctionPlanner
from rewardkit_flowgrpo.tools import DocumentStore, Tool, ToolRegistry, calculator

ITEMS = {"apple": 7, "pear": 4, "lemon": 3, "mango": 9, "peach": 6, "plum": 2, "melon": 8, "grape": 5}
QUERY = "How much do {n} {item}s cost?"
_QUERY_RE = re.compile(r"How much do (\d+) (\w+?)s cost", re.I)


def toy_documents() -> DocumentStore:
    docs = [{"title": item, "text": f"{item}: price {price}"} for item, price in ITEMS.items()]
    docs += [{"title": "opening hours", "text": "The shop opens at 9 and closes at 5."},
             {"title": "delivery", "text": "Delivery costs nothing for 10 items or more."}]
    return DocumentStore(docs)


def default_registry(docs: DocumentStore | Iterable[dict[str, str]] | str | Path | None = None, *,
                     timeout: float | None = 10.0) -> ToolRegistry:
    """The shipped registry: ``calculator`` and ``lookup`` (over ``docs``; the toy shop by default)."""
    if docs is None:
        store = toy_documents()
    elif isinstance(docs, DocumentStore):
        store = docs
    elif isinstance(docs, (str, Path)):
        store = DocumentStore.from_jsonl(docs)
    else:
        store = DocumentStore(list(docs))
    return ToolRegistry([
        Tool("calculator", calculator, "evaluate an arithmetic expression, e.g. 3 * 7"),
        Tool("lookup", store.lookup, "look a fact up in the local documents, e.g. price of apple"),
    ], timeout=timeout)


def toy_rows(n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` toy queries: ``{"prompt": question, "answer": gold}`` (gold = count * price)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        item = rng.choice(sorted(ITEMS))
        count = rng.randint(2, 9)
        rows.append({"prompt": QUERY.format(n=count, item=item), "answer": str(count * ITEMS[item])})
    return rows


def toy_dataset(n: int, *, seed: int = 0):
    from datasets import Dataset

    return Dataset.from_list(toy_rows(n, seed=seed))


def _last_number(text: str) -> str | None:
    nums = re.findall(r"-?\d+(?:\.\d+)?", text)
    return nums[-1] if nums else None


def toy_executor(query: str, action: PlannerAction, memory: Memory, tools: ToolRegistry) -> str:
    m = _QUERY_RE.search(query)
    count, item = (m.group(1), m.group(2)) if m else ("1", query)
    if action.tool == "lookup":
        return f"price of {item}"
    if action.tool == "calculator":
        price = next((_last_number(e.result) for e in reversed(memory.entries) if e.tool == "lookup" and e.ok), None)
        return f"{count} * {price}" if price is not None else count
    return action.sub_goal or query


def toy_verifier(query: str, memory: Memory) -> bool:
    """STOP once a calculator call used a looked-up price (a bare count does not answer the query)."""
    last = memory.entries[-1] if memory.entries else None
    return last is not None and last.tool == "calculator" and last.ok and "*" in last.command


def toy_generator(query: str, memory: Memory) -> str:
    for e in reversed(memory.entries):
        if e.tool == "calculator" and e.ok:
            return e.result
    for e in reversed(memory.entries):
        if e.ok and _last_number(e.result) is not None:
            return _last_number(e.result)
    return "unknown"


# the memory goes last, right before the generation point: a 2-layer planner reads it more easily
TOY_PLANNER_TEMPLATE = ("Query: {query}\nTools: {tool_names}\nReply 'Tool: <name>'.\nMemory:\n{memory}\n"
                        "Now step {turn}.")


def toy_system(tokenizer: Any, *, max_turns: int = 3, tools: ToolRegistry | None = None, **kwargs: Any) -> AgentSystem:
    kwargs.setdefault("planner_template", TOY_PLANNER_TEMPLATE)
    return AgentSystem(tokenizer, tools or default_registry(toy_documents(), timeout=5.0), toy_executor,
                       toy_verifier, toy_generator, max_turns=max_turns, **kwargs)


def random_tool_text(rng: random.Random, tools: Sequence[str] = ("lookup", "calculator"), step: int | None = None) -> str:
    tool = rng.choice(list(tools))
    return f"Tool: {tool}" if step is None else f"Step {step}: Tool: {tool}"


def format_warmup(model: Any, tokenizer: Any, system: AgentSystem, queries: Sequence[str], *, steps: int = 150,
                  batch_size: int = 16, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Supervised warm-up on the planner *format* only: "Tool: <name>" with the tool drawn uniformly at
    random whatever the memory says, on prompts from random rollouts. No policy is taught: a
    memory-blind choice caps success at 1/2. Returns the losses."""
    import torch

    rng = random.Random(seed)
    planner = FunctionPlanner(lambda _p: random_tool_text(rng, system.tools.names), tokenizer)
    trajs = system.run(list(queries), planner, group_size=2)
    pairs = [(t.prompt_ids, t.index + 1) for tr in trajs for t in tr.turns]
    if not pairs:
        raise RuntimeError("warm-up rollouts produced no planner turns")
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    torch.manual_seed(seed)
    for _ in range(steps):
        batch = [pairs[rng.randrange(len(pairs))] for _ in range(batch_size)]
        # the tool is re-drawn each time so the model learns a uniform choice, not a memorised one
        batch = [(p, list(tokenizer(random_tool_text(rng, system.tools.names), add_special_tokens=False)
                          ["input_ids"]) + [tokenizer.eos_token_id]) for p, step in batch]
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full_like(ids, -100)
        att = torch.zeros_like(ids)
        for i, (p, c) in enumerate(batch):
            seq = p + c
            ids[i, :len(seq)] = torch.tensor(seq)
            att[i, :len(seq)] = 1
            labels[i, len(p):len(seq)] = torch.tensor(c)
        out = model(input_ids=ids.to(device), attention_mask=att.to(device), labels=labels.to(device))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    model.eval()
    return losses


def success_rate(system: AgentSystem, planner: Any, rows: Sequence[dict[str, Any]], judge: Any = None, *,
                 group_size: int = 1) -> dict[str, float]:
    """Success rate (mean judged outcome) and mean turns of ``group_size`` rollouts per row."""
    from rewardkit_flowgrpo.judges import exact_judge

    judge = judge or exact_judge
    trajs = system.run([r["prompt"] for r in rows], planner, group_size)
    gold = {i: r["answer"] for i, r in enumerate(rows)}
    wins = [0.0 if tr.error else float(judge(tr.query, tr.answer, gold[tr.query_id])) for tr in trajs]
    return {"success": sum(wins) / len(wins), "turns": sum(tr.num_turns for tr in trajs) / len(trajs),
            "errors": sum(tr.error is not None for tr in trajs) / len(trajs)}
